"""Which model files are selected: include/exclude globs and the pickle/code safety rules."""

from __future__ import annotations

import pytest

from airpack.selection import Excluded, select_files

REPO = [
    "config.json", "tokenizer.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
    "pytorch_model.bin", "training_args.pt", "optimizer.pth", "rng_state.pkl", "extra.pickle", "last.ckpt",
    "modeling_custom.py", "sub/configuration.py", "onnx/model.onnx", "gguf/m.Q4_K_M.gguf",
    ".gitattributes", ".git/HEAD", ".cache/huggingface/x.lock", "sub/.DS_Store", ".DS_Store",
]


def reasons(sel) -> dict[str, str]:
    return {e.path: e.reason for e in sel.excluded}


def test_pickle_and_code_left_out_by_default_with_the_reason() -> None:
    sel = select_files(REPO)
    assert sel.selected == ("config.json", "gguf/m.Q4_K_M.gguf", "model-00001-of-00002.safetensors",
                            "model-00002-of-00002.safetensors", "onnx/model.onnx", "tokenizer.json")
    why = reasons(sel)
    for path in ("pytorch_model.bin", "training_args.pt", "optimizer.pth", "rng_state.pkl", "extra.pickle",
                 "last.ckpt"):
        assert "pickle" in why[path] and "model.allowPickle" in why[path], path
    for path in ("modeling_custom.py", "sub/configuration.py"):
        assert "trust_remote_code" in why[path] and "model.allowCode" in why[path], path
    # VCS metadata and OS litter are never model content, and not worth listing.
    assert not {".gitattributes", ".git/HEAD", ".cache/huggingface/x.lock", "sub/.DS_Store",
                ".DS_Store"} & (set(sel.selected) | set(why))


def test_opt_in_to_pickle_and_code_separately() -> None:
    pickles = {"pytorch_model.bin", "training_args.pt", "optimizer.pth", "rng_state.pkl", "extra.pickle",
               "last.ckpt"}
    code = {"modeling_custom.py", "sub/configuration.py"}
    with_pickle = select_files(REPO, allow_pickle=True)
    assert pickles <= set(with_pickle.selected) and not code & set(with_pickle.selected)
    with_code = select_files(REPO, allow_code=True)
    assert code <= set(with_code.selected) and not pickles & set(with_code.selected)


@pytest.mark.parametrize(("include", "exclude", "selected"), [
    (("*.gguf",), (), {"gguf/m.Q4_K_M.gguf"}),  # a name-only glob matches in subfolders
    (("gguf/*",), (), {"gguf/m.Q4_K_M.gguf"}),
    (("*.safetensors", "config.json"), ("*-00002-*",), {"model-00001-of-00002.safetensors", "config.json"}),
    ((), ("onnx/*", "gguf/*"), {"config.json", "tokenizer.json", "model-00001-of-00002.safetensors",
                                "model-00002-of-00002.safetensors"}),
    (("*.bin",), (), set()),  # included by name but still pickle: the safety rule wins
])
def test_include_exclude_globs(include, exclude, selected) -> None:
    sel = select_files(REPO, include=include, exclude=exclude)
    assert set(sel.selected) == selected
    # Everything else that is model content is accounted for, with a reason.
    litter = {".gitattributes", ".git/HEAD", ".cache/huggingface/x.lock", "sub/.DS_Store", ".DS_Store"}
    assert set(reasons(sel)) == set(REPO) - selected - litter


def test_reason_order_include_then_exclude_then_safety() -> None:
    sel = select_files(["a.bin", "b.bin", "c.safetensors"], include=["a.bin", "c.safetensors"],
                       exclude=["c.*"])
    assert sel.excluded == (Excluded("a.bin", "pickle weights can run code when loaded (set model.allowPickle)"),
                            Excluded("b.bin", "not matched by model.files"),
                            Excluded("c.safetensors", "matched by model.exclude"))
    assert sel.selected == ()


def test_output_is_sorted_and_deduplicated() -> None:
    sel = select_files(["b.json", "a.json", "b.json", "B.json"])
    assert sel.selected == ("B.json", "a.json", "b.json")
