"""Eval-set folders: classes, names, templates, samples, and mistakes in them."""

from __future__ import annotations

import pytest

from openwit.errors import UserError
from openwit.evalsets import EvalSet, clip_templates, parse_eval_args


def make_set(root, classes=("dog", "cat"), per_class=2):
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            (root / name / f"{i}.jpg").write_bytes(b"x")
    (root / "notes.txt").write_text("ignored")
    return root


def test_classes_are_sorted_and_samples_labelled_by_that_order(tmp_path):
    eval_set = EvalSet.open("pets", make_set(tmp_path))
    assert eval_set.classes == ["cat", "dog"]
    assert [(s.path, s.label) for s in eval_set.samples] == [
        ("cat/0.jpg", 0),
        ("cat/1.jpg", 0),
        ("dog/0.jpg", 1),
        ("dog/1.jpg", 1),
    ]


def test_classnames_and_templates_files_are_used(tmp_path):
    root = make_set(tmp_path, classes=("n01", "n02"))
    (root / "classnames.txt").write_text("golden retriever\ntabby cat\n")
    (root / "templates.txt").write_text("a photo of a {}.\n\nart of the {}.\n")
    eval_set = EvalSet.open("x", root)
    assert eval_set.classnames == ["golden retriever", "tabby cat"]
    assert eval_set.templates == ["a photo of a {}.", "art of the {}."]


def test_default_templates_are_clips_ensemble(tmp_path):
    eval_set = EvalSet.open("x", make_set(tmp_path))
    assert eval_set.templates == clip_templates()
    assert len(eval_set.templates) == 80
    assert all(t.count("{}") == 1 for t in eval_set.templates)


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda r: (r / "classnames.txt").write_text("only one\n"), "classnames.txt has 1"),
        (lambda r: (r / "templates.txt").write_text("no placeholder\n"), "templates.txt"),
    ],
)
def test_inconsistent_files_are_user_errors(tmp_path, setup, message):
    root = make_set(tmp_path)
    setup(root)
    eval_set = EvalSet.open("x", root)
    with pytest.raises(UserError, match=message):
        _ = eval_set.classnames, eval_set.templates


def test_missing_or_empty_folder_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no such directory"):
        EvalSet.open("x", tmp_path / "missing")
    with pytest.raises(UserError, match="no class folders"):
        EvalSet.open("x", tmp_path)


def test_eval_arguments_parse_and_reject_mistakes(tmp_path):
    assert parse_eval_args([f"a={tmp_path}"]) == {"a": tmp_path}
    with pytest.raises(UserError):
        parse_eval_args(["no-equals"])
    with pytest.raises(UserError, match="twice"):
        parse_eval_args(["a=x", "a=y"])


def test_class_folders_without_images_are_a_user_error(tmp_path):
    (tmp_path / "cat").mkdir()
    (tmp_path / "dog").mkdir()
    (tmp_path / "dog" / "readme.txt").write_text("no images here")
    with pytest.raises(UserError, match="no images in its 2 class folders"):
        EvalSet.open("x", tmp_path)


def test_a_dangling_symlink_is_a_sample_not_silently_left_out(tmp_path):
    root = make_set(tmp_path / "set")
    (root / "cat" / "2.jpg").symlink_to(tmp_path / "gone.jpg")
    paths = [s.path for s in EvalSet.open("x", root).samples]
    assert paths == ["cat/0.jpg", "cat/1.jpg", "cat/2.jpg", "dog/0.jpg", "dog/1.jpg"]
