#!/usr/bin/env python3
"""Writes the PyTorch-pickle test models of Tests/Parity/bin-models (needs torch and safetensors).

- base/: tiny-llama base as one `pytorch_model.bin` (torch.save's zip format, the state dict).
- ft0-sharded/: tiny-llama ft0 as two shards and `pytorch_model.bin.index.json`, as transformers
  writes them.
- hostile/: a `pytorch_model.bin` whose pickle calls os.system (it would write a file named
  PWNED beside the model if executed), next to the base's config.json.

Run: python3 Scripts/make-bin-fixtures.py  (from the repository root)
"""
import json
import os
import pickle
import shutil
import zipfile

import torch
from safetensors.torch import load_file

root = "Tests/Parity/bin-models"
models = "Examples/models/tiny-llama"
shutil.rmtree(root, ignore_errors=True)
for name in ("base", "ft0-sharded", "hostile"):
    os.makedirs(f"{root}/{name}")

for f in ("config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json"):
    shutil.copy(f"{models}/base/{f}", f"{root}/base/{f}")
    shutil.copy(f"{models}/ft0/{f}", f"{root}/ft0-sharded/{f}")
shutil.copy(f"{models}/base/config.json", f"{root}/hostile/config.json")

base = load_file(f"{models}/base/model.safetensors")
torch.save(base, f"{root}/base/pytorch_model.bin")

ft0 = load_file(f"{models}/ft0/model.safetensors")
names = list(ft0)
half = len(names) // 2
shards = {"pytorch_model-00001-of-00002.bin": names[:half], "pytorch_model-00002-of-00002.bin": names[half:]}
weight_map = {}
for shard, keys in shards.items():
    torch.save({k: ft0[k] for k in keys}, f"{root}/ft0-sharded/{shard}")
    weight_map.update({k: shard for k in keys})
index = {"metadata": {"total_size": sum(t.numel() * t.element_size() for t in ft0.values())}, "weight_map": weight_map}
json.dump(index, open(f"{root}/ft0-sharded/pytorch_model.bin.index.json", "w"), indent=2)


class Hostile:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


with zipfile.ZipFile(f"{root}/hostile/pytorch_model.bin", "w", zipfile.ZIP_STORED) as z:
    z.writestr("archive/data.pkl", pickle.dumps({"model.embed_tokens.weight": Hostile()}, protocol=2))
    z.writestr("archive/version", "3\n")
print("written", root)
