"""``fit``: epochs of a composed train step with validation, history, checkpoints, callbacks.

``fit`` joins the parts of :mod:`jcnn.training`: the step (:func:`make_train_step`: estimator,
optimiser, EMA, augmentation, placement), a loop (:class:`~jcnn.training.loops.DeviceLoop` or
:class:`~jcnn.training.loops.HostLoop`) cut into chunks (:class:`ChunkSchedule`), the resume
state (:mod:`jcnn.training.resume`), the epoch records (:mod:`jcnn.training.epoch_record`),
callbacks (:mod:`jcnn.training.callbacks`) and the preemption guard. The arguments are checked by
:class:`~jcnn.training.fit_args.FitArgs`; the result and the error of a NaN loss are in
:mod:`jcnn.training.fit_result`. :class:`Run` holds the assembled parts; ``fit`` reads as the run.

Example:
    >>> rng = np.random.default_rng(0)
    >>> x, y = rng.normal(size=(64, 4)).astype(np.float32), rng.integers(0, 2, 64)
    >>> result = jcnn.fit(L.serial(L.Dense(2)), (x, y), val=(x, y), epochs=2, batch_size=16,
    ...                   microbatches=2, ema=0.9, progress=False)
    >>> sorted(result.history)  # doctest: +NORMALIZE_WHITESPACE
    ['ema_val_accuracy', 'ema_val_loss', 'epoch', 'seconds', 'train_accuracy', 'train_loss',
     'val_accuracy', 'val_loss']
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optax
from tqdm.auto import tqdm

from jcnn.layers.core import Layer
from jcnn.training import checks, compile_cache
from jcnn.training import resume as resuming
from jcnn.training.checkpoint import Checkpointer
from jcnn.training.checks import DataSource
from jcnn.training.epoch_record import EpochTracker, extra_entries
from jcnn.training.estimators import (
    DPSGD,
    Gradients,
    LossFn,
    MetricsFn,
    check_per_example,
    default_metrics,
)
from jcnn.training.evaluation import (
    cached_eval_step,
    cached_sums_step,
    evaluate_source,
    evaluate_with,
)
from jcnn.training.fit_args import Arrays, FitArgs
from jcnn.training.fit_result import FitResult, NonFiniteLossError, raise_on_nonfinite
from jcnn.training.freeze import freeze
from jcnn.training.hooks import Callback, EpochEnd, RunInfo
from jcnn.training.keys import data_rng
from jcnn.training.learning_rate import learning_rate_of
from jcnn.training.loops import (
    CHUNK_SECONDS,
    Chunk,
    ChunkSchedule,
    DeviceLoop,
    HostLoop,
    SourceLoop,
    timed,
)
from jcnn.training.losses import softmax_cross_entropy
from jcnn.training.placement import Placement
from jcnn.training.preemption import Preempted, PreemptionGuard
from jcnn.training.state import TrainState, create_train_state
from jcnn.training.step import Transform, make_train_step

__all__ = ["Arrays", "EpochTracker", "FitArgs", "FitResult", "NonFiniteLossError", "Run", "fit"]


def _validator(a: FitArgs, ema: bool, placement: Placement) -> Callable[[Any], dict[str, float]]:
    """``ts -> metrics`` over the validation data (a source: its shards' global batches on
    the run's mesh)."""
    if checks.is_source(a.val):
        sums = cached_sums_step(a.net.apply, a.loss_fn, a.metrics_fn, ema)
        return lambda ts: evaluate_source(sums, ts, a.val, placement)
    eval_step = cached_eval_step(a.net.apply, a.loss_fn, a.metrics_fn, ema)
    val, batch_size = a.val, a.eval_batch_size
    return lambda ts: evaluate_with(eval_step, ts, val, batch_size)


@dataclass
class Run:
    """A prepared :func:`fit` run: the step, the loop, the resume point, the checkpointer and
    the callbacks."""

    args: FitArgs
    step: Any
    loop: Any
    resume: resuming.Resume
    ckpt: Checkpointer | None
    data: dict[str, Any]
    steps_per_epoch: int
    validators: dict[str, Callable[[TrainState], dict[str, float]]] = field(default_factory=dict)
    bar: Any = None

    @classmethod
    def prepare(cls, args: FitArgs) -> Run:
        """Checks the arguments, builds the step and the state, and finds the resume point."""
        a = args.checked()
        if a.privacy is not None:
            check_per_example(a.net)  # BatchNorm mixes examples: refused by its path
        ts = a.train_state
        if ts is None:
            ts = create_train_state(a.net, a.example_shape, a.optimizer, seed=a.seed)
        else:
            checks.check_train_state(ts, a.optimizer, frozen=bool(a.frozen))
        optimizer = a.optimizer
        if a.frozen:
            optimizer = freeze(optimizer, ts.params, a.frozen)
            ts = ts._replace(opt_state=optimizer.init(ts.params))
        step = make_train_step(
            a.net.apply, a.loss_fn, optimizer, mesh=a.mesh, fsdp=a.fsdp,
            microbatches=a.microbatches, privacy=a.privacy, ema=a.ema, transform=a.transform,
            metrics_fn=a.metrics_fn, gradients=a.gradients,
        )  # fmt: skip
        step.placement.check_batch_size(a.batch_size, "fit")
        if checks.is_source(a.val):
            step.placement.check_batch_size(a.eval_batch_size, "fit (validation source)")
        ts = step.prepare(step.placement.place_state(ts))  # a copy: the steps donate it
        ckpt = Checkpointer(a.checkpoint_dir, keep=a.keep_checkpoints) if a.checkpoint_dir else None
        if a.streamed:
            data, steps_per_epoch = resuming.source_fingerprint(a.train), len(a.train)
        else:
            data = resuming.fingerprint(*a.train)
            steps_per_epoch = len(a.train[0]) // a.batch_size
        resume = resuming.Resume.load(
            ckpt, ts, data=data, epochs=a.epochs, steps_per_epoch=steps_per_epoch
        )
        if a.streamed and resume.source is not None:
            a.train.restore(resume.source)  # the same sample order
        if a.progress and resume.note:
            tqdm.write(resume.note)
        run = cls(a, step, None, resume, ckpt, data, steps_per_epoch)
        if a.val is not None:
            for prefix, ema in (("val", False), ("ema_val", True)):
                if ema and a.ema is None:
                    continue
                run.validators[prefix] = _validator(a, ema, step.placement)
        return run

    def start(self) -> None:
        """Builds the loop (places the data), announces the run to the callbacks."""
        a, shuffle = self.args, data_rng(self.args.seed)
        if a.streamed:
            self.loop = SourceLoop(self.step, a.train, a.prefetch)
        elif a.on_device:
            self.loop = DeviceLoop(self.step, a.train, a.batch_size, shuffle)
        else:
            self.loop = HostLoop(self.step, a.train, a.batch_size, shuffle, a.prefetch)
        r = self.resume
        total = ((a.epochs - r.epoch) * self.steps_per_epoch - r.index) * a.batch_size
        self.bar = tqdm(total=total, disable=not a.progress, unit="img", unit_scale=True,
                        dynamic_ncols=True)  # fmt: skip
        checkpoint_dir = None if a.checkpoint_dir is None else str(a.checkpoint_dir)
        info = RunInfo(
            a.epochs, self.steps_per_epoch, a.batch_size, r.epoch, r.history, checkpoint_dir
        )
        for callback in a.callbacks:
            callback.on_train_begin(info)

    def schedule(self) -> ChunkSchedule:
        """Chunks end at periods and epoch ends; without ``log_every``, also after about
        :data:`CHUNK_SECONDS` of work (so a signal is honoured within seconds)."""
        periods = tuple(p for p in (self.args.checkpoint_every, self.args.log_every) if p)
        seconds = None if self.args.log_every else CHUNK_SECONDS
        return ChunkSchedule(self.steps_per_epoch, periods, seconds=seconds)

    def after_chunk(self, ts: TrainState, tracker: EpochTracker, first: int, metrics: dict) -> None:
        """Checks the losses, sums the metrics, saves at a period, tells the callbacks."""
        a, n = self.args, len(next(iter(metrics.values()), ()))
        checks.check_per_step(metrics, n)
        finite = "loss" not in metrics or bool(np.isfinite(metrics["loss"]).all())
        if a.stop_on_nonfinite and not finite:  # only then ask the checkpointer (a listing)
            latest = self.ckpt.latest_step() if self.ckpt is not None else None
            saved = "" if latest is None else f" (the last saved is step {latest})"
            before = tracker.sums["loss"] / tracker.steps if tracker.steps else None
            raise_on_nonfinite(metrics["loss"], ts=ts, epoch=tracker.epoch, first=first,
                               epochs=a.epochs, steps_per_epoch=self.steps_per_epoch, saved=saved,
                               mean_before=before)  # fmt: skip
        tracker.add(metrics, n)
        self.bar.update(n * a.batch_size)
        self.bar.set_postfix(
            epoch=tracker.epoch + 1, **{k: f"{v:.4f}" for k, v in tracker.means().items()}
        )
        at_period = a.checkpoint_every is not None and tracker.index % a.checkpoint_every == 0
        if at_period and tracker.index < self.steps_per_epoch:
            self.save(ts, tracker)
        for callback in a.callbacks:
            callback.on_chunk_end(Chunk(tracker.epoch, first, n, int(ts.step), metrics, ts))

    def save(self, ts: TrainState, tracker: EpochTracker, done: bool = False) -> None:
        """A checkpoint mid-epoch (with the partial sums) or at the epoch's end."""
        if self.ckpt is None:
            return
        epoch, index = (tracker.epoch + 1, 0) if done else (tracker.epoch, tracker.index)
        partial = None if done else tracker.partial()
        source = self.loop.position if self.args.streamed else None
        resuming.save(self.ckpt, ts, epoch=epoch, index=index, history=self.resume.history,
                      data=self.data, partial=partial, source=source)  # fmt: skip

    def end_epoch(self, ts: TrainState, tracker: EpochTracker) -> bool:
        """Validation, the record, the history, the checkpoint, the callbacks; True: stop."""
        record = {f"train_{k}": v for k, v in tracker.means().items()}
        for prefix, validate in self.validators.items():
            record.update({f"{prefix}_{k}": v for k, v in validate(ts).items()})
        lr = learning_rate_of(ts.opt_state)
        if lr is not None:
            record["lr"] = lr
        history = self.resume.history
        end = EpochEnd(tracker.epoch, record, history, ts)
        for callback in self.args.callbacks:
            record.update(extra_entries(callback, callback.extend_record(end), record))
        record["seconds"] = tracker.seconds()
        history.setdefault("epoch", []).append(tracker.epoch + 1)
        for k, v in record.items():
            history.setdefault(k, []).append(v)
        self.save(ts, tracker, done=True)
        tracker.ended = True
        if self.args.progress:
            shown = ", ".join(f"{k} {v:.4f}" for k, v in record.items() if k != "seconds")
            self.bar.write(
                f"epoch {tracker.epoch + 1}/{self.args.epochs}: {shown} ({record['seconds']:.1f} s)"
            )
        stops = [callback.on_epoch_end(end) for callback in self.args.callbacks]
        return any(stops)

    def stop_if_preempted(
        self, guard: PreemptionGuard, ts: TrainState, tracker: EpochTracker
    ) -> None:
        """After a signal: saves what it can and raises :class:`Preempted` (at an epoch's
        last chunk, only once the epoch has ended: validated, recorded and saved)."""
        if guard.requested is None or (tracker.index == self.steps_per_epoch and not tracker.ended):
            return
        at = f"step {int(ts.step)} (epoch {tracker.epoch + 1}, step {tracker.index} of {self.steps_per_epoch})"
        if self.ckpt is not None:
            if self.ckpt.latest_step() != int(ts.step):
                self.save(ts, tracker)  # written by the time close() returns (in fit's finally)
            said = f"saved a checkpoint at {at} in {self.ckpt.directory}; rerun the same fit call to resume exactly"
        else:
            said = f"NOTHING was saved: the {int(ts.step)} steps trained so far are lost (pass checkpoint_dir=... to make a run resumable)"
        message = f"fit: stopped by {guard.name}; {said}"
        print(message, file=sys.stderr, flush=True)
        raise Preempted(guard.requested, int(ts.step), message)

    def close(self, history: dict[str, list[float]], *, started: bool = True) -> None:
        """Closes the bar and the checkpointer; tells the callbacks (when the run started)."""
        if self.bar is not None:
            self.bar.close()
        if self.ckpt is not None:
            self.ckpt.close()  # also when a step raised: the checkpoints saved before it are kept
        for callback in self.args.callbacks if started else ():
            callback.on_train_end(history)


def fit(
    net: Layer,
    train: Arrays | DataSource,
    *,
    val: Arrays | DataSource | None = None,
    optimizer: optax.GradientTransformation | None = None,
    epochs: int = 10,
    batch_size: int | None = None,
    loss_fn: LossFn = softmax_cross_entropy,
    metrics_fn: MetricsFn = default_metrics,
    seed: int = 0,
    mesh: Any = None,
    fsdp: bool = False,
    microbatches: int = 1,
    privacy: DPSGD | None = None,
    ema: float | None = None,
    gradients: Gradients | None = None,
    transform: Transform | None = None,
    on_device: bool = True,
    frozen: Sequence[str] = (),
    train_state: TrainState | None = None,
    callbacks: Sequence[Callback] = (),
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int | None = None,
    keep_checkpoints: int = 3,
    eval_batch_size: int | None = None,
    log_every: int | None = None,
    prefetch: int = 2,
    progress: bool = True,
    stop_on_nonfinite: bool = True,
) -> FitResult:
    """Trains ``net`` on ``train = (x, y)`` for ``epochs`` epochs; every training option composes.

    The step is :func:`jcnn.training.make_train_step` of ``mesh``, ``fsdp``, ``microbatches``,
    ``privacy``, ``ema``, ``transform`` and ``gradients`` (any combination); the loop is the
    on-device one (the data placed once on the device(s); ``on_device=True``) or the host one
    (prefetched host batches), both in chunks of about two seconds of work. The data are
    checked before anything is compiled: arrays of the same non-zero length; floating ``x``
    (convert pixels with ``x.astype(np.float32) / 255``); for a loss of integer labels (the
    default :func:`jcnn.losses.softmax_cross_entropy`) labels ``(N,)`` in ``[0, K)``; finite
    values (with ``stop_on_nonfinite``, which also stops at the first NaN/inf training loss with
    a :class:`NonFiniteLossError`).

    A data source (:class:`jcnn.data.stream.StreamSource`, or anything with the
    :class:`~jcnn.training.checks.DataSource` methods) may stand for the arrays: ``fit`` then
    runs the host loop over its batches in its own order (its batch is the batch: leave ``batch_size``
    out, or give its own), saves its position in every checkpoint and restores it on resume, so a
    resumed run continues the same sample order bit for bit. Its images arrive as they were
    loaded (uint8): make :func:`jcnn.data.stream.normalize_on_device` the net's first layer.

    Args:
        net: the network (per-example ``Layer``).
        train: ``(x, y)``, ``x: (N, *example_shape)`` floating-point; or a data source.
        val: ``(x, y)`` (or a data source, when ``train`` is one) evaluated after each epoch in
            inference mode (``val_<metric>``; with ``ema`` also ``ema_val_<metric>``, the
            averaged params).
        optimizer: any optax optimiser, called (default ``optax.adam(1e-3)``). With
            ``optax.inject_hyperparams`` the history records ``lr`` each epoch.
        epochs, batch_size, seed: the run (``batch_size`` is the global batch, default 128 for
            arrays and a data source's own for a source, which refuses another; each epoch
            drops its last partial batch; the seed fixes init, data order and every step key).
        loss_fn, metrics_fn: ``loss_fn(outputs, y)`` a floating scalar (the batch mean);
            ``metrics_fn(outputs, y) -> {name: scalar}`` (default accuracy).
        mesh, fsdp: train data-parallel on a ``jax.sharding.Mesh`` (replicated or FSDP).
        microbatches: gradient accumulation over this many slices of each batch.
        privacy: a :class:`jcnn.privacy.DPSGD` (BatchNorm is refused by its path).
        ema: keep an exponential moving average of the params with this decay.
        gradients: your own gradient estimator (see :mod:`jcnn.training.estimators`).
        transform: ``transform(key, x_batch)``, augmentation inside the step (both loops); a
            transform that states ``on_batch = True`` maps the whole batch ``(x, y)`` instead
            (:class:`jcnn.data.MixupCutmix`, with ``loss_fn=jcnn.losses.soft_cross_entropy``).
        on_device: the on-device loop (default) or the host loop; same results for one seed.
        frozen: parameter path patterns kept fixed (:func:`jcnn.training.freeze`).
        train_state: start from this state (transfer learning); its ``opt_state`` must be
            ``optimizer``'s unless ``frozen`` remakes it.
        callbacks: :class:`jcnn.training.callbacks.Callback` values (``MetricsLogger``,
            ``TensorBoard``, ``KeepBest``, ``EarlyStopping``, ``LearningRate``, yours).
        checkpoint_dir: where to save; if it holds a checkpoint of this run, training RESUMES
            from it (state, data position, history; a finished run returns at once). A
            checkpoint of a run on other data is an error. SIGTERM/SIGINT save a checkpoint
            there and end the run with :class:`jcnn.training.Preempted` (without a dir they
            say what is lost).
        checkpoint_every: also save every N steps (default: at every epoch's end only).
        keep_checkpoints: how many recent checkpoints to keep.
        eval_batch_size: batch size of validation (default 1000; a source's own).
        log_every: also end a chunk every N steps (callbacks' ``on_chunk_end``).
        prefetch: host batches prepared ahead by a thread (host loop; 0: none).
        progress: a progress bar (images/s) and a line per epoch.
        stop_on_nonfinite: check the data for NaN/inf and stop at a non-finite loss.

    Returns:
        :class:`FitResult`: the final train state (``.ema`` when averaged), the history (lists
        per epoch: ``epoch``, ``train_*``, ``val_*``, ``ema_val_*``, ``lr``, ``seconds``) and
        where it resumed from.

    Raises:
        ValueError, TypeError: bad arguments or data, named with what arrived and the fix.
        NonFiniteLossError: a NaN or inf training loss (``stop_on_nonfinite``).
        Preempted: SIGTERM or SIGINT (a ``SystemExit``; exit status 128 + the signal).
    """
    compile_cache.enable()  # the persistent XLA cache: a rerun loads its compiled steps
    run = Run.prepare(FitArgs(**locals()))
    ts, r = run.resume.train_state, run.resume
    if r.epoch >= epochs:  # a finished run, rerun: nothing to compile, place or train
        run.close(r.history, started=False)
        return FitResult(ts, r.history, r.resumed_from, r.note)
    run.start()
    schedule = run.schedule()
    try:
        with PreemptionGuard() as guard:
            for epoch in range(r.epoch, epochs):
                tracker = EpochTracker.start(epoch, r.index if epoch == r.epoch else 0, r.partial)
                chunk_runner = timed(run.loop.epoch(epoch, tracker.index))
                while tracker.index < run.steps_per_epoch:
                    first = tracker.index
                    ts, metrics, seconds = chunk_runner(ts, first, schedule.next(first))
                    run.after_chunk(ts, tracker, first, metrics)
                    schedule.observe(tracker.index - first, seconds)
                    run.stop_if_preempted(guard, ts, tracker)
                if run.end_epoch(ts, tracker):
                    break
                run.stop_if_preempted(guard, ts, tracker)
    finally:
        run.close(r.history)
    return FitResult(ts, r.history, r.resumed_from, r.note)
