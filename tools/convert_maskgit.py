r"""Converts official MaskGIT flax checkpoints (msgpack) into magnets_tf Keras weights.

python tools/convert_maskgit.py --tokenizer_checkpoint=tokenizer_imagenet256_checkpoint \
    --transformer_checkpoint=maskgit_imagenet256_checkpoint --output_dir=/tmp/maskgit256

Writes <output_dir>/tokenizer (tokenizer_config.json + tokenizer.weights.h5, readable with
`load_tokenizer`) and <output_dir>/transformer (transformer_config.json +
transformer.weights.h5). flax is not needed. The official transformer has no null
class: a new row is inserted (mean class embedding), so classifier-free guidance needs
fine-tuning with label dropout before use.
"""
import os
import shutil
import tempfile

from absl import flags

from magnets_tf.checkpoints import maskgit
from magnets_tf.cli import app
from magnets_tf.models.saving import save_tokenizer, save_transformer
from magnets_tf.utils import files

flags.DEFINE_string("tokenizer_checkpoint", None, "Official VQGAN tokenizer msgpack file.")
flags.DEFINE_string("transformer_checkpoint", None, "Official MaskGIT transformer msgpack file.")
flags.DEFINE_string("output_dir", None, "Where to write the converted models.")
flags.DEFINE_integer("image_size", 256, "Image size the tokenizer is used at (256 or 512).")
flags.DEFINE_integer("codebook_size", 1024, "Codebook size of the transformer's vocabulary.")
flags.DEFINE_bool("overwrite", False, "Replace existing converted models in --output_dir.")
flags.mark_flag_as_required("output_dir")

def _publish(tmp, final, overwrite):
    """Renames a finished temp dir into place (old one removed only afterwards)."""
    if os.path.exists(final):
        if not overwrite:
            raise app.UsageError(f"{final} exists; pass --overwrite to replace it")
        old = final + ".old"
        shutil.rmtree(old, ignore_errors=True)
        os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old)
    else:
        os.rename(tmp, final)


def _write(output_dir, name, save, overwrite):
    """Saves into a temp dir beside the target, then publishes it; no debris on errors."""
    tmp = tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=output_dir)
    try:
        save(tmp)
        _publish(tmp, os.path.join(output_dir, name), overwrite)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    fl = flags.FLAGS
    if not fl.tokenizer_checkpoint and not fl.transformer_checkpoint:
        raise app.UsageError("give --tokenizer_checkpoint and/or --transformer_checkpoint")
    files.check_writable_dir(fl.output_dir, "--output_dir")
    if fl.tokenizer_checkpoint:
        model = maskgit.vqgan_from_checkpoint(fl.tokenizer_checkpoint, fl.image_size)
        _write(fl.output_dir, "tokenizer", lambda p: save_tokenizer(model, p), fl.overwrite)
        print(f"tokenizer: grid {model.grid_shape}, {model.codebook_size} codes, "
              f"{model.count_params():,} parameters -> {fl.output_dir}/tokenizer")
    if fl.transformer_checkpoint:
        model = maskgit.transformer_from_checkpoint(fl.transformer_checkpoint,
                                                    fl.codebook_size)
        _write(fl.output_dir, "transformer", lambda p: save_transformer(model, p),
               fl.overwrite)
        print(f"transformer: {model.num_layers} layers, width {model.hidden_size}, "
              f"{model.num_classes} classes, {model.num_tokens} tokens, "
              f"{model.count_params():,} parameters -> {fl.output_dir}/transformer "
              f"(null-class row added: fine-tune before using guidance)")


def run():
    app.run(main)


if __name__ == "__main__":
    run()
