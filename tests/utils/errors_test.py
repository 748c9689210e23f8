"""One-line error text: TensorFlow's annotations removed, the file path found."""
import tensorflow as tf

from magnets_tf.utils import errors

SAVE_FULL = ("{{function_node __wrapped__SaveV2_dtypes_12_device_/job:localhost/replica:0/"
             "task:0/device:CPU:0}} /data/m/checkpoints/ckpt-5_temp/part-00000-of-00001."
             "data-00000-of-00001.tempstate77; No space left on device [Op:SaveV2] name: ")
READ = ("{{function_node __wrapped__IteratorGetNext_output_types_2_device_/job:localhost/"
        "replica:0/task:0/device:CPU:0}} corrupted record at 3712 [Op:IteratorGetNext] "
        "name: \n\t [[{{node x}}]]\nmore")


def test_first_line_drops_annotations_and_dumps():
    assert errors.first_line(READ) == "corrupted record at 3712"
    assert errors.first_line(tf.errors.DataLossError(None, None, READ)) == \
        "corrupted record at 3712"
    assert errors.first_line("a does not match: [<tf.Variable 'w'>] Showing 3") == \
        "a does not match:"
    assert errors.first_line("") == ""
    assert errors.first_line(ValueError()) == "ValueError"


def test_path_in_skips_device_names():
    assert errors.path_in(SAVE_FULL) == ("/data/m/checkpoints/ckpt-5_temp/part-00000-of-00001."
                                         "data-00000-of-00001.tempstate77")
    assert errors.path_in(READ) is None
    assert errors.path_in("open /tmp/x.h5 failed") == "/tmp/x.h5"
