"""The one ground-truth reader: the documented 3-column table, extra columns, clear refusals."""

from __future__ import annotations

import pytest

from biovita.annotations import TruthEvent, read_truth
from biovita.errors import ManifestError


def test_the_documented_three_column_table_and_extra_columns_are_read(tmp_path):
    plain = tmp_path / "plain.csv"
    plain.write_text("start_s,end_s,species_id\n1.5,2.25,turdus_merula\n")
    assert read_truth(plain) == [TruthEvent(1.5, 2.25, "turdus_merula")]
    extra = tmp_path / "extra.csv"
    extra.write_text("observer,species_id,end_s,start_s,snr_db\nAB,x_y,4,3,6.5\nAB,x_y,6,5,\n")
    assert read_truth(extra) == [TruthEvent(3.0, 4.0, "x_y", 6.5), TruthEvent(5.0, 6.0, "x_y")]


@pytest.mark.parametrize(
    "text, words",
    [
        ("begin,end,label\n1,2,x\n", "lacks column(s)"),
        ("start_s,end_s,species_id\nsoon,2,x\n", ":2: could not convert"),
        ("start_s,end_s,species_id\n3,2,x\n", "from 3.0 s to 2.0 s"),
        ("start_s,end_s,species_id\n1,nan,x\n", "from 1.0 s to nan s"),
        ("start_s,end_s,species_id\n1,2, \n", "empty species_id"),
    ],
)
def test_bad_tables_are_refused_with_the_line_and_the_fix(tmp_path, text, words):
    path = tmp_path / "t.csv"
    path.write_text(text)
    with pytest.raises(ManifestError) as err:
        read_truth(path)
    assert words in str(err.value) and err.value.hint
