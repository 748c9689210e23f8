r"""Trains the class-accuracy classifier on an offline data set.

python tools/train_classifier.py --dataset=fashion_mnist --model_dir=runs/classifier_fmnist
"""
from absl import flags

from magnets_tf.cli import app
from magnets_tf.utils import files

flags.DEFINE_string("dataset", "fashion_mnist", "Offline data set (fashion_mnist, mnist5k).")
flags.DEFINE_string("model_dir", None, "Output directory.", required=True)
flags.DEFINE_integer("epochs", 3, "Training epochs.")
flags.DEFINE_integer("train_examples", 0, "Use only the first N training images (0: all).")
flags.DEFINE_integer("seed", 0, "Initialisation seed.")
FLAGS = flags.FLAGS


def main():
    if FLAGS.epochs <= 0:
        raise app.UsageError(f"--epochs must be positive, got {FLAGS.epochs}")
    files.check_writable_dir(FLAGS.model_dir, "--model_dir")
    from magnets_tf.data.datasets import load_arrays
    from magnets_tf.evaluation import classifier
    train_x, train_y = load_arrays(FLAGS.dataset, "train")
    test_x, test_y = load_arrays(FLAGS.dataset, "test")
    if FLAGS.train_examples:
        train_x, train_y = train_x[:FLAGS.train_examples], train_y[:FLAGS.train_examples]
    model, accuracy = classifier.train_classifier(train_x, train_y, test_x, test_y,
                                                  epochs=FLAGS.epochs, seed=FLAGS.seed,
                                                  verbose=2)
    metrics = dict(dataset=FLAGS.dataset, test_accuracy=accuracy, n_test=int(len(test_y)),
                   n_train=int(len(train_y)), epochs=FLAGS.epochs)
    classifier.save_classifier(model, FLAGS.model_dir, metrics)
    print(f"test_accuracy={accuracy:.4f}")


def run():
    app.run(main)


if __name__ == "__main__":
    run()
