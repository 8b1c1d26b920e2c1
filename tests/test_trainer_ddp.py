"""DDP on CPU: 2 processes (torch.multiprocessing spawn, gloo, file:// rendezvous) train the toy
model a few steps; parameters must be identical on both ranks, only rank 0 writes files."""
from __future__ import annotations

import os
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

HERE = os.path.dirname(os.path.abspath(__file__))


class _Interrupt(Exception):
    pass


def _worker(rank: int, world: int, init_file: str, tmp: str) -> None:
    sys.path.insert(0, HERE)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        import test_trainer as t
        from avsr.robust.frame_dropout import FrameDropoutMethod
        from avsr.trainer import Trainer, TrainingMethod

        class StopAt(TrainingMethod):
            name = "stop_at"

            def __init__(self, at):
                self.at = at

            def on_step_end(self, trainer, stats):
                if trainer.step == self.at:
                    raise _Interrupt()

        def run(exp_dir, seed, stop=0):
            torch.manual_seed(seed + rank)            # different init per rank: DDP must broadcast
            tr = Trainer(t.ToyModel(0.1), t.ToyDataset(48, 0), t.ToyDataset(8, 1, prefix="v"),
                         t.cfg(max_epochs=2, batch_size=4, accum_grad=2, save_every_steps=2, lr=0.05),
                         methods=[FrameDropoutMethod(d_prob=0.5, seed=3), t.AuxHead(), StopAt(stop)],
                         exp_dir=exp_dir)
            assert tr.world_size == world and tr.rank == rank and tr.ddp_model is not tr.model
            return tr, tr.fit()

        tr, res = run(os.path.join(tmp, "exp"), 100)
        # the model and the method's trainable module (register_trainable): broadcast from rank 0, then
        # the same averaged gradients on both ranks
        flat = torch.cat([p.detach().reshape(-1) for p in tr.params])
        gathered = [torch.zeros_like(flat) for _ in range(world)]
        dist.all_gather(gathered, flat)
        # interrupted after update 3 (step checkpoint at update 2, mid-epoch 1), then resumed
        try:
            run(os.path.join(tmp, "run"), 100, stop=3)
            raise AssertionError("not interrupted")
        except _Interrupt:
            pass
        tr2, _ = run(os.path.join(tmp, "run"), 300)
        flat2 = torch.cat([p.detach().reshape(-1) for p in tr2.params])
        torch.save({"gathered": gathered, "resumed": flat2, "step": tr.step, "n_batches": len(tr.train_sampler),
                    "averaged": res.averaged, "fd_state": tr.methods[0].state_dict()["rng"]["state"]["state"]},
                   os.path.join(tmp, "out", f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not available")
def test_ddp_two_ranks_identical_parameters(tmp_path):
    exp, out = tmp_path / "exp", tmp_path / "out"
    out.mkdir()
    mp.spawn(_worker, args=(2, str(tmp_path / "rdzv"), str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(out / "rank0.pt", weights_only=True)
    r1 = torch.load(out / "rank1.pt", weights_only=True)
    g = r0["gathered"]
    assert torch.equal(g[0], g[1])                       # identical parameters on both ranks
    # 48 items / batch 4 = 12 batches -> 6 per rank per epoch -> 3 updates (accum 2)
    assert r0["n_batches"] == 6 and r0["step"] == r1["step"] == 6
    # resumed after an interruption mid-epoch: same parameters as the uninterrupted run
    assert torch.allclose(r0["resumed"], g[0], atol=1e-6, rtol=0)
    assert torch.allclose(r1["resumed"], g[0], atol=1e-6, rtol=0)
    assert "resumed from" in (tmp_path / "run" / "train.log").read_text()
    assert r0["fd_state"] != r1["fd_state"]               # ranks draw different frame drops
    assert r0["averaged"] and r1["averaged"] is None      # only rank 0 averages / writes
    files = sorted(os.listdir(exp))
    assert "checkpoint.pth" in files and "train.log" in files
    assert not [f for f in files if ".tmp." in f]
    from avsr.trainer import load_checkpoint
    ck = load_checkpoint(exp / "checkpoint.pth")
    assert ck["world_size"] == 2 and len(ck["ranks"]) == 2
    saved = list(ck["model"].values()) + list(ck["trainables"]["aux_probe"].values())
    assert torch.equal(torch.cat([p.reshape(-1) for p in saved]), g[0])
