"""Label sets written as text with whichever separator the data uses: found when dataset.label_delimiter is not
given, refused in one line when ambiguous; a single-label run on such a column says so on its data line."""

from __future__ import annotations

import pytest

from cnntrain.data.loading import describe_data
from cnntrain.data.sources.label_delimiters import find_delimiter, looks_like_sets
from cnntrain.errors import DataError

from helpers import dataset_section
from synthetic_images import write_label_file
from synthetic_labelsets import SHAPES, make_label_sets


def label_cfg(file, **overrides):
    base = {
        "name": "labels",
        "kind": "labels",
        "root": ".",
        "file": str(file),
        "val_split": 0.2,
        "val_strategy": "stratified",
        "test_split": 0.2,
        "num_workers": 0,
    }
    return dataset_section({**base, **overrides})


@pytest.mark.parametrize(
    ("cells", "expected"),
    [
        (["0;3;7", "1", "2;5"], ";"),
        (["cat, dog", "bird"], ","),
        (["a|b", "c"], "|"),
        (["cat dog", "bird"], " "),
        (["big cat;dog", "fox"], ";"),  # a space inside a name stays in it
        (["one", "two"], " "),  # no separator at all: every cell is one label
        (['["a", "b"]', "c;d"], ";"),  # JSON lists are not text to split
    ],
)
def test_the_delimiter_is_found(cells, expected):
    assert find_delimiter(cells, "here") == expected


def test_two_separators_are_ambiguous_and_refused_in_one_line():
    with pytest.raises(DataError) as caught:
        find_delimiter(["a;b", "c,d"], "label file x.csv, column 'labels'")
    message = str(caught.value)
    assert "\n" not in message and 'both ";" and ","' in message and "dataset.label_delimiter=" in message


def test_single_label_cells_that_look_like_sets():
    sep, example = looks_like_sets(["0;3;7", "3;7", "0;1", "1", "7"])
    assert sep == ";" and example in {"0;3;7", "3;7", "0;1"}
    assert looks_like_sets(["Smith, John", "Doe, Jane", "Roe, Rick"]) is None  # names with a comma stay names
    assert looks_like_sets(["cat", "dog"]) is None


@pytest.mark.parametrize("sep", [";", ",", "|"])
def test_a_multilabel_file_is_split_on_its_own_separator(tmp_path, sep):
    """The issue's case: `path,labels` with `0;3;7` and dataset.task=multilabel, no delimiter given."""
    rows = [
        {"path": p, "labels": sep.join(str(SHAPES.index(s)) for s in labels)}
        for p, labels in make_label_sets(tmp_path, 24)
    ]
    file = write_label_file(tmp_path / "labels.csv", rows)
    found = describe_data(label_cfg(file, task="multilabel"))
    assert found.classes == ["0", "1", "2"]
    assert f'split on "{sep}" (found; dataset.label_delimiter chooses another)' in found.found.layout
    expected = {f"img/{i}.png": tuple((i % 8) >> bit & 1 for bit in range(3)) for i in range(24)}
    assert {p.relative_to(tmp_path).as_posix(): hot for p, hot in found.found.train_files} == expected


def test_a_given_delimiter_is_used_and_not_called_found(tmp_path):
    rows = [{"path": p, "labels": ";".join(labels)} for p, labels in make_label_sets(tmp_path, 16)]
    file = write_label_file(tmp_path / "labels.csv", rows)
    layout = describe_data(label_cfg(file, task="multilabel", label_delimiter=";")).found.layout
    assert 'split on ";"' in layout and "found" not in layout


def test_an_ambiguous_multilabel_file_asks_for_the_delimiter(tmp_path):
    rows = [{"path": p, "labels": ";".join(labels)} for p, labels in make_label_sets(tmp_path, 16)]
    rows[3]["labels"] = "circle,cross"
    file = write_label_file(tmp_path / "labels.csv", rows)
    with pytest.raises(
        DataError,
        match=r"column 'labels': the label sets hold both \";\" and \",\".*"
        r"dataset\.label_delimiter=",
    ):
        describe_data(label_cfg(file, task="multilabel"))


def test_a_single_label_run_on_label_sets_says_so_on_its_data_line(tmp_path):
    rows = [{"path": p, "labels": ";".join(labels) or "none"} for p, labels in make_label_sets(tmp_path, 24)]
    file = write_label_file(tmp_path / "labels.csv", rows)
    found = describe_data(label_cfg(file))
    assert found.task == "single" and len(found.classes) == 8  # each set one class, as asked
    layout = found.found.layout
    assert "column 'labels' looks like label sets split on \";\"" in layout
    assert "add dataset.task=multilabel" in layout and "\n" not in layout
