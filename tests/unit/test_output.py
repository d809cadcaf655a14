"""output.py: rows as a table or JSON, settings as aligned lines or JSON; strings out, nothing printed."""

from __future__ import annotations

import json

import pytest

from taoremote.output import render, render_mapping

ROWS = [
    {"job": "a1b2c3d4", "task": "detectnet_v2", "status": "Up 7 seconds", "exit_code": ""},
    {"job": "9c0d1e2f", "task": "yolo_v4", "status": "Exited (3) 7 seconds ago", "exit_code": 3},
]


def test_table_has_a_header_from_the_keys_and_one_line_per_row() -> None:
    assert render(ROWS, "table") == (
        "job       task          status                    exit_code\n"
        "--------  ------------  ------------------------  -----------\n"
        "a1b2c3d4  detectnet_v2  Up 7 seconds\n"
        "9c0d1e2f  yolo_v4       Exited (3) 7 seconds ago  3"
    )


def test_json_is_an_indented_list_keeping_key_order_and_value_types() -> None:
    assert render(ROWS, "json") == (
        "[\n"
        "  {\n"
        '    "job": "a1b2c3d4",\n'
        '    "task": "detectnet_v2",\n'
        '    "status": "Up 7 seconds",\n'
        '    "exit_code": ""\n'
        "  },\n"
        "  {\n"
        '    "job": "9c0d1e2f",\n'
        '    "task": "yolo_v4",\n'
        '    "status": "Exited (3) 7 seconds ago",\n'
        '    "exit_code": 3\n'
        "  }\n"
        "]"
    )


def test_json_round_trips() -> None:
    assert json.loads(render(ROWS, "json")) == ROWS


def test_empty_table_is_a_sentence_not_a_bare_header() -> None:
    assert render([], "table") == "No jobs."


def test_empty_table_sentence_can_be_chosen_by_the_caller() -> None:
    assert render([], "table", empty="No checks ran.") == "No checks ran."


def test_empty_json_is_an_empty_list_whatever_the_sentence() -> None:
    assert render([], "json") == "[]"
    assert render([], "json", empty="No checks ran.") == "[]"


def test_rows_may_be_any_sequence_of_mappings() -> None:
    assert render(tuple(ROWS[:1]), "json") == render(ROWS[:1], "json")


def test_non_ascii_values_stay_readable_in_the_table() -> None:
    table = render([{"host": "gpu1", "detail": "résultats → ok"}], "table")
    assert table.splitlines()[-1] == "gpu1    résultats → ok"


def test_mapping_table_aligns_values_after_the_longest_key() -> None:
    data = {"version": "0.1.0", "override_registry": "registry.example.com:5000", "hosts": ["gpu1", "gpu2"]}
    assert render_mapping(data, "table") == (
        "version            0.1.0\n"
        "override_registry  registry.example.com:5000\n"
        "hosts              gpu1, gpu2"
    )


@pytest.mark.parametrize("empty", ["", None, [], ()])
def test_mapping_table_shows_a_dash_for_empty_values(empty: object) -> None:
    assert render_mapping({"mounts": empty}, "table") == "mounts  -"


def test_mapping_table_keeps_zero_and_false() -> None:
    assert render_mapping({"gpus": 0, "tty": False}, "table") == "gpus  0\ntty   False"


def test_mapping_json_keeps_lists_and_key_order() -> None:
    data = {"version": "0.1.0", "hosts": ["local"], "mounts": []}
    assert render_mapping(data, "json") == (
        '{\n  "version": "0.1.0",\n  "hosts": [\n    "local"\n  ],\n  "mounts": []\n}'
    )


def test_empty_mapping_renders_as_nothing_or_an_empty_object() -> None:
    assert render_mapping({}, "table") == ""
    assert render_mapping({}, "json") == "{}"
