"""specs.py over real TAO specs (tests/data/specs, from NVIDIA/tao_tutorials): each swept value lands on
its own line, every other byte stays, and every path or value that could mean something else is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from taoremote.errors import UsageError
from taoremote.specs import apply_params, check_paths, scalar_paths, spec_diff, spec_kind, yaml_overrides

SPECS = Path(__file__).resolve().parents[1] / "data" / "specs"
PROTOBUF_SPECS = sorted(p.name for p in SPECS.iterdir() if p.suffix in (".txt", ".cfg"))


def read(name: str) -> str:
    return (SPECS / name).read_bytes().decode("utf-8")  # no newline translation: bytes in, bytes out


def is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def changed_lines(before: str, after: str) -> list[tuple[str, str]]:
    """(old line, new line) for each line that differs; the line count must not change."""
    old, new = before.splitlines(keepends=True), after.splitlines(keepends=True)
    assert len(old) == len(new)
    return [(a, b) for a, b in zip(old, new, strict=True) if a != b]


def test_the_fixtures_are_there() -> None:
    assert len(PROTOBUF_SPECS) >= 6
    assert (SPECS / "README.md").is_file()


# --------------------------------------------------------------------------------------------- byte identity


@pytest.mark.parametrize("name", PROTOBUF_SPECS)
def test_setting_every_scalar_to_its_own_text_gives_the_same_bytes(name: str) -> None:
    text = read(name)
    paths = scalar_paths(text)
    assert len(paths) > 10
    assert apply_params(text, paths) == text


@pytest.mark.parametrize("name", PROTOBUF_SPECS)
def test_each_scalar_changed_alone_changes_only_its_own_value(name: str) -> None:
    text = read(name)
    for path, value in scalar_paths(text).items():
        new = '"swept"' if value[0] in "\"'" else ("1234" if is_number(value) else "SWEPT")
        edited = apply_params(text, {path: new})
        ((old_line, new_line),) = changed_lines(text, edited)
        # the one changed line is the old one with the value's bytes replaced, nothing else
        assert old_line.replace(value, new, 1) == new_line, path
        assert len(edited) - len(text) == len(new) - len(value)


def test_comments_spacing_and_commas_survive_an_edit() -> None:
    text = read("classification_spec.cfg")
    edited = apply_params(
        text,
        {
            "model_config.arch": "vgg",  # `arch: "resnet",` keeps its trailing comma
            "lr_config.step.learning_rate": "0.01",
            "train_config.optimizer.sgd.nesterov": "True",
        },
    )
    assert changed_lines(text, edited) == [
        ('  arch: "resnet",\n', '  arch: "vgg",\n'),
        ("    nesterov: False\n", "    nesterov: True\n"),
        ("      learning_rate: 0.006\n", "      learning_rate: 0.01\n"),
    ]
    assert "  # regularizer\n" in edited and "\n\n  # learning_rate\n" in edited


def test_no_space_after_the_colon_and_brace_forms_are_read() -> None:
    yolo = read("yolo_v4_train_resnet18_kitti.txt")
    edited = apply_params(
        yolo,
        {"augmentation_config.exposure": "2.0", "dataset_config.data_sources.image_directory_path": "/d"},
    )
    assert changed_lines(yolo, edited) == [
        ("  exposure:1.5\n", "  exposure:2.0\n"),
        (
            '    image_directory_path: "/workspace/tao-experiments/data/kitti_split/training"\n',
            '    image_directory_path: "/d"\n',
        ),
    ]
    infer = read("detectnet_v2_inference_kitti_tlt.txt")  # `name{` and `value: {`
    edited = apply_params(infer, {"classwise_bbox_handler_config[2].value.bbox_color.B": "7"})
    ((_, line),) = changed_lines(infer, edited)
    assert line.strip() == "B: 7"


def test_crlf_line_ends_and_a_missing_final_newline_are_kept() -> None:
    text = read("efficientdet_d0_train.txt").replace("\n", "\r\n").rstrip("\r\n")
    edited = apply_params(text, {"training_config.learning_rate": "0.01"})
    assert edited == text.replace("learning_rate: 0.02\r\n", "learning_rate: 0.01\r\n")


# -------------------------------------------------------------------------------------------- kinds of field


def test_numbers_are_written_as_given() -> None:
    text = read("yolo_v4_train_resnet18_kitti.txt")
    edited = apply_params(
        text,
        {
            "training_config.learning_rate.soft_start_cosine_annealing_schedule.max_learning_rate": "5E-4",
            "training_config.batch_size_per_gpu": "16",
            "augmentation_config.hue": "-.25",
        },
    )
    assert "max_learning_rate: 5E-4\n" in edited
    assert "batch_size_per_gpu: 16\n" in edited and "  hue: -.25\n" in edited


def test_enums_and_bools_stay_bare_names() -> None:
    text = read("detectnet_v2_train_resnet18_kitti.txt")
    edited = apply_params(
        text,
        {
            "target_class_config[1].value.clustering_config.clustering_algorithm": "HYBRID",
            "model_config.use_batch_norm": "false",
            "evaluation_config.average_precision_mode": "SAMPLE",
        },
    )
    old_new = changed_lines(text, edited)
    assert [new.strip() for _, new in old_new] == [
        "clustering_algorithm: HYBRID",
        "use_batch_norm: false",
        "average_precision_mode: SAMPLE",
    ]


def test_strings_are_quoted_with_the_files_own_quote() -> None:
    effdet = read("efficientdet_d0_train.txt")
    assert "model_name: 'efficientdet-d1'\n" in apply_params(effdet, {"model_name": "efficientdet-d1"})
    assert "model_name: 'efficientdet-d2'\n" in apply_params(effdet, {"model_name": "'efficientdet-d2'"})
    yolo = read("yolo_v4_train_resnet18_kitti.txt")
    assert '  arch: "efficientnet_b0"\n' in apply_params(yolo, {"yolov4_config.arch": "efficientnet_b0"})
    assert '  arch: "a b"\n' in apply_params(yolo, {"yolov4_config.arch": '"a b"'})  # quoted: one token


def test_a_unique_tail_of_a_path_is_enough() -> None:
    text = read("detectnet_v2_train_resnet18_kitti.txt")
    assert check_paths(text, ["num_epochs", "soft_start_annealing_schedule.max_learning_rate"]) == {
        "num_epochs": "training_config.num_epochs",
        "soft_start_annealing_schedule.max_learning_rate": (
            "training_config.learning_rate.soft_start_annealing_schedule.max_learning_rate"
        ),
    }


def test_an_index_picks_one_of_a_repeated_field() -> None:
    text = read("detectnet_v2_train_resnet18_kitti.txt")
    path = "postprocessing_config.target_class_config[2].value.clustering_config.dbscan_eps"
    edited = apply_params(text, {path: "0.3"})
    ((old, new),) = changed_lines(text, edited)
    assert (old.strip(), new.strip()) == ("dbscan_eps: 0.230000004172", "dbscan_eps: 0.3")
    cls = read("classification_spec.cfg")
    ((old, new),) = changed_lines(cls, apply_params(cls, {"freeze_blocks[1]": "3"}))
    assert (old, new) == ("  freeze_blocks: 1\n", "  freeze_blocks: 3\n")


# -------------------------------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("name", "path", "value", "why"),
    [
        ("yolo_v4_train_resnet18_kitti.txt", "training_config.max_lr", "1", "no such field"),
        ("yolo_v4_train_resnet18_kitti.txt", "freeze_blocks", "1", "no such field"),  # only in a comment
        ("yolo_v4_train_resnet18_kitti.txt", "target_class_mapping[7].key", "x", "no such field"),
        ("yolo_v4_train_resnet18_kitti.txt", "target_class_mapping.key", "x", "ambiguous, 5 fields"),
        ("classification_spec.cfg", "freeze_blocks", "1", "ambiguous, 2 fields"),
        ("classification_spec.cfg", "enable_center_crop", "True", "ambiguous, 2 fields"),
        ("yolo_v4_train_resnet18_kitti.txt", "training_config.learning_rate", "1", "is a message"),
        ("yolo_v4_train_resnet18_kitti.txt", "max_learning_rate", "1e-3 }", "not one scalar value"),
        ("yolo_v4_train_resnet18_kitti.txt", "max_learning_rate", "1e-3}", "not one scalar value"),
        ("yolo_v4_train_resnet18_kitti.txt", "max_learning_rate", "", "not one scalar value"),
        ("yolo_v4_train_resnet18_kitti.txt", "max_learning_rate", "1e-3\nnum_epochs: 1", "not one scalar"),
        ("yolo_v4_train_resnet18_kitti.txt", "yolov4_config.arch", '"resnet', "not one scalar value"),
        ("yolo_v4_train_resnet18_kitti.txt", "yolov4_config.arch", "res net", "not one scalar value"),
        ("yolo_v4_train_resnet18_kitti.txt", "yolov4_config.arch", 'a"b', "not one scalar value"),
        ("yolo_v4_train_resnet18_kitti.txt", "max_learning_rate", "high", "has a number there"),
        ("yolo_v4_train_resnet18_kitti.txt", "max_learning_rate", '"1e-3"', "has a number there"),
        ("yolo_v4_train_resnet18_kitti.txt", "regularizer.type", "2", "has a name there"),
        ("yolo_v4_train_resnet18_kitti.txt", "regularizer.type", '"L2"', "has a name there"),
        ("yolo_v4_train_resnet18_kitti.txt", "training_config..num_epochs", "1", "not a dotted path"),
        ("yolo_v4_train_resnet18_kitti.txt", "num epochs", "1", "not a dotted path"),
    ],
)
def test_a_path_or_value_that_could_mean_something_else_is_a_usage_error(
    name: str, path: str, value: str, why: str
) -> None:
    with pytest.raises(UsageError, match=r"^--param ") as caught:
        apply_params(read(name), {path: value})
    assert path in str(caught.value) and why in str(caught.value)
    assert caught.value.exit_code == 2


def test_two_paths_that_name_one_field_are_refused() -> None:
    text = read("yolo_v4_train_resnet18_kitti.txt")
    with pytest.raises(UsageError, match=r"both name training_config\.num_epochs"):
        apply_params(text, [("num_epochs", "1"), ("training_config.num_epochs", "2")])


def test_a_list_value_cannot_be_swept() -> None:
    text = "a: [1, 2]\nb { c: [ { d: 1 } ] }\n"
    assert scalar_paths(text) == {}
    with pytest.raises(UsageError, match="a is a list"):
        apply_params(text, {"a": "3"})
    with pytest.raises(UsageError, match="no such field"):
        apply_params(text, {"b.c.d": "3"})


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ('a: "open\n', "line 1: unbalanced quote"),
        ("a {\n  b: 1\n", "missing '}'"),
        ("a: 1\nperson\ncar\n", "line 3: expected ':' or '{' after person"),
        ("a: }", "unexpected '}'"),
        ("0 1 2\n", "expected a field name, found '0'"),
    ],
)
def test_text_that_is_not_protobuf_text_is_a_usage_error_with_its_line(text: str, why: str) -> None:
    with pytest.raises(UsageError, match="not protobuf text") as caught:
        apply_params(text, {"a": "1"}, source="/specs/train.txt")
    assert why in str(caught.value) and str(caught.value).startswith("/specs/train.txt, line ")


# ----------------------------------------------------------------------------------------- diff, kinds, yaml


def test_the_dry_run_diff_shows_only_the_swept_lines() -> None:
    text = read("detectnet_v2_train_resnet18_kitti.txt")
    edited = apply_params(text, {"max_learning_rate": "1e-3", "num_epochs": "10"})
    diff = spec_diff(text, edited, "trial-0/spec.txt")
    assert diff.startswith("--- a/trial-0/spec.txt\n+++ b/trial-0/spec.txt\n@@ ")
    changes = [line for line in diff.splitlines()[2:] if line[:1] in "+-"]
    assert changes == [
        "-  num_epochs: 120",
        "+  num_epochs: 10",
        "-      max_learning_rate: 5e-05",
        "+      max_learning_rate: 1e-3",
    ]
    assert spec_diff(text, text) == ""


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/specs/train.yaml", "yaml"),
        ("/specs/TRAIN.YML", "yaml"),
        ("/specs/train.txt", "protobuf"),
        ("/specs/classification_spec.cfg", "protobuf"),
        ("/specs/net.prototxt", "protobuf"),
        ("/specs/spec", "protobuf"),
    ],
)
def test_the_spec_kind_comes_from_the_extension(path: str, kind: str) -> None:
    assert spec_kind(path) == kind


def test_yaml_overrides_are_path_equals_value() -> None:
    assert yaml_overrides({"train.optim.lr": "2e-4", "dataset.batch_size": "8"}) == (
        "train.optim.lr=2e-4",
        "dataset.batch_size=8",
    )
    assert yaml_overrides([("+train.extra", "[1,2]")]) == ("+train.extra=[1,2]",)


@pytest.mark.parametrize(
    ("path", "value", "why"),
    [
        ("model.backbone", "fan small", "whitespace"),
        ("model.backbone", "'fan_small'", "quotes"),
        ("model.backbone", '"fan_small"', "quotes"),
        ("model.backbone", "a\\b", "backslash"),
        ("model.backbone", "a\tb", "whitespace"),
        ("model.backbone", "", "empty"),
        ("model backbone", "x", "not a dotted path"),
        ("model..backbone", "x", "not a dotted path"),
        ("model.backbone=x", "y", "not a dotted path"),
    ],
)
def test_a_yaml_override_that_would_not_survive_taos_argv_is_a_usage_error(
    path: str, value: str, why: str
) -> None:
    with pytest.raises(UsageError, match=r"^--param ") as caught:
        yaml_overrides({path: value})
    assert why in str(caught.value) and path in str(caught.value)


def test_a_yaml_spec_given_to_the_protobuf_editor_is_refused_not_mangled() -> None:
    with pytest.raises(UsageError, match=r"dino_train\.yaml, line 2: .*not protobuf text"):
        apply_params(read("dino_train.yaml"), {"train.num_epochs": "2"}, source="dino_train.yaml")
