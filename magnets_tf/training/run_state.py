"""What a run leaves in model_dir besides checkpoints: the divergence aftermath, the run
summaries with their history, config files rewritten only when they change, and the
training status of the exported model (which step of how many it is)."""
import json
import os

from magnets_tf.training import checkpoint_files
from magnets_tf.training.guard import DivergenceError
from magnets_tf.utils import files

TRAINING_STATUS = "training_status.json"


def after_divergence(error, checkpoint_dir, restore_and_export):
    """The DivergenceError to report after `error` (a guard's DivergenceError).

    Checkpoints taken after `error.last_good_step` hold diverged weights: they are moved to
    `checkpoints/diverged/` (kept, not deleted) and the state file lists the rest; if any
    was moved, `restore_and_export(prefix)` re-exports the last good checkpoint. The
    message names that checkpoint: a restart resumes there."""
    good = checkpoint_files.newest_at_or_before(checkpoint_dir, error.last_good_step)
    later = [p for p in checkpoint_files.checkpoints(checkpoint_dir)
             if checkpoint_files.step_of(p) > error.last_good_step]
    moved = ""
    for prefix in later:
        moved = checkpoint_files.set_aside(prefix, "diverged")
    if later:
        checkpoint_files.write_state(checkpoint_dir,
                                     checkpoint_files.checkpoints(checkpoint_dir))
        if good:
            restore_and_export(good)
        names = ", ".join(os.path.basename(p) for p in later)
        moved = f"; checkpoints taken after it ({names}) were moved to {moved}"
    where = (f"the last checkpoint before the divergence is {good} (a restart resumes "
             f"there)" if good else "no checkpoint precedes it (a restart starts over)")
    return DivergenceError(
        f"{error}. Nothing of that step was saved; {where}{moved}. Lower the learning rate "
        f"or check the data, then run again", error.step, error.last_good_step)


def write_text_if_changed(path, text):
    """Writes `text` to `path` (atomically) unless the file already holds it."""
    try:
        with open(path) as f:
            if f.read() == text:
                return path
    except FileNotFoundError:
        pass
    return files.write_text(path, text)


def summary_with_history(path, summary):
    """`summary` plus, under "history", the summaries of earlier runs kept from the
    summary file at `path` (oldest first)."""
    history = []
    try:
        with open(path) as f:
            previous = json.load(f)
        if isinstance(previous, dict):
            history = list(previous.pop("history", []))
            history.append(previous)
    except (OSError, ValueError):
        pass
    return dict(summary, history=history) if history else summary


def write_training_status(model_dir, step, train_steps):
    """Records beside the exported model that it is the model after `step` of the run's
    `train_steps` steps (`training_status.json`: step, train_steps, complete). The loop
    writes it after every export, so a model exported at a leg's stop (or any periodic
    checkpoint) says that it is unfinished."""
    step, train_steps = int(step), int(train_steps)
    return files.write_json(os.path.join(model_dir, TRAINING_STATUS),
                            dict(step=step, train_steps=train_steps,
                                 complete=step >= train_steps))


def read_training_status(model_dir):
    """The training status of the model in `model_dir` ({"step", "train_steps",
    "complete"}), or None when there is none (a model exported before it was recorded,
    a committed or imported one) or it cannot be read."""
    try:
        with open(os.path.join(model_dir, TRAINING_STATUS)) as f:
            status = json.load(f)
        return dict(step=int(status["step"]), train_steps=int(status["train_steps"]),
                    complete=bool(status["complete"]))
    except (OSError, ValueError, TypeError, KeyError):
        return None


def unfinished_note(model_dir):
    """A one-line note when `model_dir` holds the model of an unfinished training run (a
    preview, not the final model), else None."""
    status = read_training_status(model_dir)
    if status is None or status["complete"]:
        return None
    return (f"{model_dir} holds the model after step {status['step']} of "
            f"{status['train_steps']}: its training is unfinished (a preview, not the final "
            f"model; {TRAINING_STATUS})")
