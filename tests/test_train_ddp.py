"""Two CPU processes under ``torchrun`` with the gloo backend, through the real CLI.

Rank 0 writes the stage's slices once to a file that both ranks map; each rank's batches
come from its own DataLoader worker.  Each rank trains on different batches; identical
weights at the end therefore prove that the generator's and the discriminator's gradients
(the discriminator's from two passes, the first under ``no_sync``) were averaged across
ranks.  Batch-norm running statistics are
per-rank buffers under DistributedDataParallel, so they are not compared; rank 0's are saved.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file

WORKER = textwrap.dedent(
    """
    import json, os, sys
    import nibabel as nib
    import numpy as np
    import metasrgan.train.loop as loop
    from metasrgan.cli import main
    from metasrgan.samples_path import sample_path

    out, config, runs = sys.argv[1:4]
    rank = int(os.environ["RANK"])
    volume = np.asarray(nib.load(sample_path("mni152_train")).dataobj, dtype=np.float32)
    volume /= np.percentile(volume, 99.5)
    crops = [np.clip(volume[40:88, 60:108, k], 0, 1).copy() for k in (1, 4, 7)]
    loop.load_stage_images = lambda sources, split: crops

    record = {"writes": [], "batches": []}
    for name in ("save_model", "save_state"):
        def wrapped(*args, _real=getattr(loop, name), _name=name, **kwargs):
            record["writes"].append(_name)
            return _real(*args, **kwargs)
        setattr(loop, name, wrapped)
    real_step = loop.gan_step
    def gan_step(batch, *args, **kwargs):  # the batches this rank trains on (from its workers)
        record["batches"].append(float(batch["hr"].sum()))
        return real_step(batch, *args, **kwargs)
    loop.gan_step = gan_step
    real_fit = loop.Trainer.fit
    def fit(self):
        result = real_fit(self)
        from safetensors.torch import save_file
        weights = {f"g.{k}": p.detach().contiguous() for k, p in self.generator.named_parameters()}
        for k, p in self.discriminator.named_parameters():
            weights[f"d.{k}"] = p.detach().contiguous()
        save_file(weights, f"{out}/rank{rank}.safetensors")
        record.update(run_dir=str(self.run_dir), world=self.dist.world_size)
        return result
    loop.Trainer.fit = fit
    code = main(["train", "--config", config, "--runs", runs, "--no-progress"])
    with open(f"{out}/rank{rank}.json", "w") as f:
        json.dump(record, f)
    sys.exit(code)
    """
)


def test_two_gloo_processes_keep_identical_replicas(tmp_path):
    config = {
        "name": "ddp",
        "model": {"name": "meta-srgan", "args": {"features": 8, "blocks": 1}},
        "discriminator": {"name": "discriminator", "args": {"widths": [8, 8, 16, 16]}},
        "loss": {"l1": 1.0, "adversarial": 0.01, "perceptual": 0.0},
        "optim": {"lr": 1e-3, "d_lr": 1e-3},
        "batch_size": 2,
        "patch_size": 24,
        "patches_per_image": 2,
        "scales": [1.5, 2.0, 3.0],
        "warmup_l1_steps": 1,
        "stages": [{"name": "only", "steps": 3, "data": [{"kind": "samples"}]}],
        "val_data": [{"kind": "samples"}],
        "val_scales": [2.0],
        "checkpoint_every": 2,
        "validate_every": 2,
        "log_every": 1,
        "device": "cpu",
        "threads": 1,
        "workers": 1,  # each rank's batches come from its own DataLoader worker
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    runs = tmp_path / "runs"
    (runs / "ddp").mkdir(parents=True)  # taken: the new run must become ddp-2 on every rank
    (tmp_path / "worker.py").write_text(WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        str(tmp_path / "worker.py"), str(tmp_path), str(tmp_path / "c.yaml"), str(runs),
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["world"] == r1["world"] == 2
    assert r0["run_dir"] == r1["run_dir"] == str(runs / "ddp-2")
    assert sorted(p.name for p in runs.iterdir()) == ["ddp", "ddp-2"]
    assert r0["batches"] != r1["batches"]  # ranks read different data
    assert r1["writes"] == [] and "save_state" in r0["writes"]  # rank 0 alone writes
    w0, w1 = (load_file(str(tmp_path / f"rank{r}.safetensors")) for r in (0, 1))
    assert w0.keys() == w1.keys() and any(k.startswith("d.") for k in w0)
    assert all(torch.equal(w0[k], w1[k]) for k in w0), "replicas drifted apart"

    run = Path(r0["run_dir"])
    steps = [json.loads(x)["step"] for x in (run / "log.jsonl").read_text().splitlines()]
    assert steps.count(1) == 1 and steps.count(3) == 2  # one logger: train line + validation
    assert saved_equals_replica(run, w0)
    assert not (run / "slices").exists()  # the shared slice file is gone after the stage


def saved_equals_replica(run: Path, replica: dict[str, torch.Tensor]) -> bool:
    saved = load_file(str(run / "checkpoints" / "last.safetensors"))
    return all(torch.equal(saved[k[2:]], v) for k, v in replica.items() if k.startswith("g."))
