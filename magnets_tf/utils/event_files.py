"""Reads TensorBoard event files back the way TensorBoard does (`EventAccumulator`): the
scalar steps per tag, the tags of a summary plugin (images, text), the hparams session.
For the tests of what the trainers write and scripts/check_tensorboard.py."""
import os

from tensorboard.backend.event_processing import event_accumulator
from tensorboard.util import tensor_util
from tensorboard.plugins.hparams import metadata as hparams_metadata


def load(run_dir):
    """A loaded `EventAccumulator` of the event files directly in `run_dir` (all kept)."""
    accumulator = event_accumulator.EventAccumulator(
        str(run_dir), size_guidance={event_accumulator.SCALARS: 0,
                                     event_accumulator.IMAGES: 0,
                                     event_accumulator.TENSORS: 0})
    return accumulator.Reload()


def scalar_values(run_dir):
    """{tag: [(step, value)]} of the scalars of `run_dir` (tf.summary.scalar writes
    tensors)."""
    accumulator = load(run_dir)
    return {tag: [(event.step, float(tensor_util.make_ndarray(event.tensor_proto)))
                  for event in accumulator.Tensors(tag)]
            for tag in accumulator.Tags()["tensors"]
            if accumulator.SummaryMetadata(tag).plugin_data.plugin_name == "scalars"}


def scalar_steps(run_dir):
    """{tag: [steps]} of the scalars of `run_dir`."""
    return {tag: [step for step, _ in values]
            for tag, values in scalar_values(run_dir).items()}


def plugin_tags(run_dir, plugin_name):
    """The tags of `run_dir` written by the summary plugin `plugin_name` ("images", "text",
    "hparams", ...)."""
    accumulator = load(run_dir)
    return sorted(tag for tag in accumulator.Tags()["tensors"]
                  if accumulator.SummaryMetadata(tag).plugin_data.plugin_name == plugin_name)


def session_hparams(run_dir):
    """(trial name, {hparam: value}) of the hparams session written into `run_dir`."""
    accumulator = load(run_dir)
    content = accumulator.SummaryMetadata(hparams_metadata.SESSION_START_INFO_TAG)
    info = hparams_metadata.parse_session_start_info_plugin_data(content.plugin_data.content)
    values = {}
    for name, value in info.hparams.items():
        kind = value.WhichOneof("kind")
        values[name] = getattr(value, kind)
    return info.group_name, values


def run_dirs(model_dir):
    """The directories under model_dir (itself included) holding event files, relative."""
    found = []
    for root, _, names in os.walk(model_dir):
        if any(name.startswith("events.out.tfevents") for name in names):
            found.append(os.path.relpath(root, model_dir))
    return sorted(found)
