"""Config loading, merging and validation (no media involved)."""

from __future__ import annotations

import logging

import pytest

from facepriv.config import (
    load_run_config,
    node_specs,
    parse_node_config,
    parse_run_config,
    resolve_node_config,
    resolve_node_name,
)
from facepriv.errors import ConfigError


def test_every_node_yaml_parses_and_has_valid_defaults():
    specs = node_specs()
    expected = {
        "input.visual", "model.mtcnn", "draw.mosaic_bbox", "draw.blur_bbox", "draw.legend",
        "dabble.fps", "output.screen", "output.media_writer", "output.csv_writer",
    }
    assert expected <= set(specs)
    for name in specs:
        resolve_node_config(name)  # defaults pass their own rules


def test_merge_order_defaults_then_run_config_then_node_config():
    merged = resolve_node_config(
        "model.mtcnn", {"min_size": 20, "score_threshold": 0.8}, {"min_size": 30}
    )
    assert merged["min_size"] == 30
    assert merged["score_threshold"] == 0.8
    assert merged["network_thresholds"] == [0.2, 0.2, 0.2]  # the default, untouched


def test_nested_settings_merge_key_by_key():
    merged = resolve_node_config(
        "input.visual", {"resize": {"do_resizing": True}}, {"resize": {"width": 640}}
    )
    assert merged["resize"] == {"do_resizing": True, "width": 640, "height": 720}


def test_ints_are_accepted_where_floats_are_expected():
    merged = resolve_node_config("model.mtcnn", {"network_thresholds": [1, 0.7, 0.7]})
    assert merged["network_thresholds"] == [1.0, 0.7, 0.7]
    assert isinstance(merged["network_thresholds"][0], float)


def test_nodes_list_accepts_strings_and_one_key_mappings():
    config = parse_run_config(
        {"nodes": ["input.visual", {"model.mtcnn": {"min_size": 20}}, {"draw.mosaic_bbox": None}]},
        "test",
    )
    assert config.nodes == [
        ("input.visual", {}), ("model.mtcnn", {"min_size": 20}), ("draw.mosaic_bbox", {}),
    ]


def test_legacy_node_names_and_keys_are_mapped_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING):
        config = parse_run_config(
            {"nodes": [{"input.live": {"input_source": 0}},
                       {"model.mtcnn": {"mtcnn_min_size": 20, "mtcnn_thresholds": [0.5, 0.6, 0.6],
                                        "mtcnn_score": 0.5}},
                       {"draw.blur_bbox": {"blur_level": 30}}]},
            "test",
        )
    assert config.nodes[0] == ("input.visual", {"source": 0})
    mtcnn = resolve_node_config("model.mtcnn", config.nodes[1][1])
    assert (mtcnn["min_size"], mtcnn["network_thresholds"], mtcnn["score_threshold"]) == (
        20, [0.5, 0.6, 0.6], 0.5,
    )
    assert resolve_node_config("draw.blur_bbox", config.nodes[2][1])["blur_kernel_size"] == 30
    text = caplog.text
    assert "input.live" in text and "deprecated" in text
    assert "mtcnn_min_size" in text and "blur_level" in text
    recorded = parse_run_config({"nodes": [{"input.recorded": {"input_dir": "x.mp4"}}]}, "t")
    assert recorded.nodes[0] == ("input.visual", {"source": "x.mp4"})


def test_unknown_node_names_close_matches():
    with pytest.raises(ConfigError, match="did you mean 'model.mtcnn'"):
        resolve_node_name("model.mtcn")
    with pytest.raises(ConfigError, match="facepriv nodes"):
        resolve_node_name("zzz.qqq")


def test_unknown_key_is_an_error_listing_valid_keys():
    with pytest.raises(ConfigError) as err:
        resolve_node_config("model.mtcnn", {"min_sise": 20})
    message = str(err.value)
    assert "model.mtcnn.min_sise" in message and "did you mean 'min_size'" in message
    assert "network_thresholds" in message and "score_threshold" in message


def test_unknown_nested_key_is_an_error():
    with pytest.raises(ConfigError, match="input.visual.resize.widht"):
        resolve_node_config("input.visual", {"resize": {"widht": 3}})


@pytest.mark.parametrize(
    ("node", "settings", "fragment"),
    [
        ("model.mtcnn", {"min_size": "big"}, "model.mtcnn.min_size = 'big' has the wrong type"),
        ("model.mtcnn", {"min_size": True}, "wrong type"),
        ("model.mtcnn", {"score_threshold": 1.5}, "between 0.0 and 1.0"),
        ("model.mtcnn", {"network_thresholds": [0.6, 0.7]}, "exactly 3 values"),
        ("model.mtcnn", {"network_thresholds": [0.6, 0.7, 7]}, "network_thresholds[2] = 7.0"),
        ("model.mtcnn", {"min_size": 5}, "at least 12"),
        ("draw.legend", {"position": "left"}, "choose one of 'top', 'bottom'"),
        ("draw.legend", {"show": []}, "at least 1"),
        ("input.visual", {"source": 1.5}, "int or str"),
        ("input.visual", {"mirror_image": "yes"}, "expected bool"),
        ("draw.mosaic_bbox", {"mosaic_level": 0}, "between 1 and 64"),
    ],
)
def test_wrong_types_and_ranges_name_the_key_value_and_allowed(node, settings, fragment):
    with pytest.raises(ConfigError) as err:
        resolve_node_config(node, settings)
    assert fragment in str(err.value)


def test_node_config_accepts_json_and_python_literals():
    assert parse_node_config('{"model.mtcnn": {"min_size": 20}}') == {"model.mtcnn": {"min_size": 20}}
    assert parse_node_config('{"input.visual": {"mirror_image": true}}') == {
        "input.visual": {"mirror_image": True}
    }
    assert parse_node_config("{'input.visual': {'mirror_image': True}}") == {
        "input.visual": {"mirror_image": True}
    }
    assert parse_node_config("{'input.live': {'input_source': 'a.mp4'}}") == {
        "input.visual": {"source": "a.mp4"}
    }
    for bad in ("{not a mapping", "[1, 2]", '{"model.mtcnn": 3}'):
        with pytest.raises(ConfigError, match="--node_config"):
            parse_node_config(bad)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("nodes: [input.visual\n", "not valid YAML at line"),
        ("just_a_string", "has no 'nodes:' list"),
        ("nodes: []\n", "non-empty list"),
        ("nodes:\n- input.visual\nnode:\n- x\n", "unknown top-level key"),
        ("nodes:\n- input.visual: 3\n", "must be a mapping"),
        ("nodes:\n- {a.b: {}, c.d: {}}\n", "one-key mapping"),
    ],
)
def test_bad_run_config_files(tmp_path, text, fragment):
    path = tmp_path / "config.yml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=None) as err:
        load_run_config(path)
    assert fragment in str(err.value)


def test_missing_config_file_suggests_init(tmp_path):
    with pytest.raises(ConfigError, match="facepriv init"):
        load_run_config(tmp_path / "nope.yml")
