"""The JSON helpers every stored result goes through."""

from __future__ import annotations

from dataclasses import dataclass

from core.fileio import read_versioned, write_json_atomic


@dataclass
class Record:
    level: float

    @classmethod
    def from_dict(cls, data: dict) -> Record:
        return cls(level=float(data["level"]))


def test_a_versioned_record_reads_back_and_anything_else_reads_as_never_written(tmp_path):
    path = tmp_path / "record.json"
    assert read_versioned(path, 2, Record.from_dict) is None  # missing
    write_json_atomic(path, {"version": 2, "level": 0.9})
    assert read_versioned(path, 2, Record.from_dict) == Record(0.9)
    assert read_versioned(path, 3, Record.from_dict) is None  # another version
    for broken in ({"version": 2}, {"version": 2, "level": "high"}, {"version": 2, "level": None}, [2], "x"):
        write_json_atomic(path, broken)
        assert read_versioned(path, 2, Record.from_dict) is None, broken
    path.write_text('{"version": 2, "lev')  # torn
    assert read_versioned(path, 2, Record.from_dict) is None
