"""The one dtype-name map."""

from neuron2graph.dtypes import short_name, torch_name


def test_names_round_trip() -> None:
    assert [short_name(x) for x in ("float32", "torch.bfloat16", "fp16", None, "int8")] == [
        "fp32", "bf16", "fp16", None, None]
    assert torch_name("bf16") == "bfloat16" and torch_name("float32") == "float32"
