"""Train the course CNN on MNIST: the main job.

conv 5x5 -> 8, max-pool 2, conv 3x3 -> 16, max-pool 2, dense 10 (5,386 parameters), Adam
lr 0.005, batch 1,000, as in the course text "5 Convolutional Neural Networks".

    python -m experiments.train_mnist                          # MNIST, or the offline fallback
    python -m experiments.train_mnist --data-dir <folder>      # t10k only: 5,000 / 5,000
    python -m experiments.train_mnist --checkpoint-every 5     # rerun: resumes (or is done)

Writes ``metrics.json``, ``learning_curves.png`` and ``filters.png`` in ``--out``. With
``--checkpoint-every N`` it saves under ``--out/checkpoints`` every N steps and at every epoch's
end; a rerun resumes from there with the history so far (its curves show every epoch) and says
so; a rerun of a finished run trains nothing and reports the result again (pass more
``--epochs`` to train on). A ``--data-dir`` that does not exist or holds no MNIST files is an
error (status 2), never a silent fallback.
"""

from __future__ import annotations

import textwrap
import time

import numpy as np
import optax

import jcnn
from experiments import common
from jcnn import models, viz
from jcnn.training import fit


def main(argv: list[str] | None = None) -> dict:
    p = common.parser("train_mnist", __doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=30, help="epochs (default 30)")
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="batch size (default 1000, the course's; 100 on the small offline fallback)",
    )
    p.add_argument("--lr", type=float, default=0.005, help="Adam learning rate (default 0.005)")
    p.add_argument(
        "--host-loop",
        action="store_true",
        help="one compiled call per step with host batches (default: the on-device epoch)",
    )
    p.add_argument("--checkpoint-every", type=int, default=None, help="checkpoint every N steps")
    args = p.parse_args(argv)
    if args.quick:
        args.epochs = min(args.epochs, 2)

    data = common.load_data(args, n_train=None, n_val=None, quick_train=2000, quick_val=None)
    out = common.output_dir(args.out)
    print(f"data: {data['source']}")
    (x_train, y_train), (x_val, y_val) = data["train"], data["val"]
    default_batch = 100 if data["source"].startswith("sklearn") else 1000
    batch_size = min(args.batch_size or default_batch, len(x_train))

    net = models.cnn()
    print(jcnn.summary(net, x_train.shape[1:]))
    t0 = time.perf_counter()
    result = fit(
        net,
        (x_train, y_train),
        val=(x_val, y_val),
        optimizer=optax.adam(args.lr),
        epochs=args.epochs,
        batch_size=batch_size,
        seed=args.seed,
        on_device=not args.host_loop,
        checkpoint_dir=(out / "checkpoints") if args.checkpoint_every else None,
        checkpoint_every=args.checkpoint_every,
        progress=not args.no_progress,
    )
    wall = time.perf_counter() - t0
    if result.resume_note and args.no_progress:  # with progress on, fit has printed it
        print(result.resume_note)
    hist = result.history
    params = result.train_state.params
    viz.learning_curves(
        {"cnn": hist},
        out / "learning_curves.png",
        title=textwrap.fill(data["source"].split(" from ")[0], 100),
    )
    viz.filter_grid(params["Conv_0"]["kernel"], out / "filters.png", title="first-layer filters")
    val_acc = hist.get("val_accuracy", [])
    epoch_seconds = hist.get("seconds", [])[1:] or hist.get("seconds", [])
    summary = {
        "data": data["source"],
        "model": "course cnn",
        "params": jcnn.count_params(net, x_train.shape[1:]),
        "epochs": len(hist.get("epoch", [])),
        "batch_size": batch_size,
        "lr": args.lr,
        "loop": "host" if args.host_loop else "on-device",
        "resumed_from_step": result.resumed_from,
        "final_val_accuracy": val_acc[-1] if val_acc else None,
        "best_val_accuracy": max(val_acc) if val_acc else None,
        "median_epoch_seconds_after_compile": (
            float(np.median(epoch_seconds)) if epoch_seconds else None
        ),
        "first_epoch_seconds": epoch_seconds[0] if epoch_seconds else None,
        "wall_seconds": wall,
        "history": hist,
    }
    common.write_json(out / "metrics.json", summary)
    print(_result_line(summary, out))
    return summary


def _result_line(summary: dict, out: object) -> str:
    """The last line: accuracy, epochs, time per epoch, where the outputs are."""
    if summary["final_val_accuracy"] is None:  # a checkpoint of an older jcnn, without history
        return f"no epochs in the checkpoint's history to report; outputs in {out}"
    return (
        f"final validation accuracy {summary['final_val_accuracy']:.4f} "
        f"(best {summary['best_val_accuracy']:.4f}) after {summary['epochs']} "
        f"epoch{'' if summary['epochs'] == 1 else 's'}; "
        f"{summary['median_epoch_seconds_after_compile']:.2f} s/epoch ({summary['loop']} loop); "
        f"outputs in {out}"
    )


if __name__ == "__main__":
    main()
