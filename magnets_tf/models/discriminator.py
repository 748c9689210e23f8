"""PatchGAN discriminator: the optional adversarial term of tokenizer training."""
import keras
import tensorflow as tf


class PatchDiscriminator(keras.Model):
    """PatchGAN: strided 4x4 convs with GroupNorm + leaky ReLU, one logit per patch."""

    def __init__(self, filters=32, num_layers=2, norm_groups=8, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.num_layers = int(num_layers)
        self.norm_groups = int(norm_groups)
        self.convs = [keras.layers.Conv2D(self.filters, 4, strides=2, padding="same",
                                          name="conv0")]
        self.norms = [None]
        for i in range(1, self.num_layers):
            width = self.filters * min(2 ** i, 8)
            self.convs.append(keras.layers.Conv2D(width, 4, strides=2, padding="same",
                                                  use_bias=False, name=f"conv{i}"))
            self.norms.append(keras.layers.GroupNormalization(self.norm_groups,
                                                              name=f"norm{i}"))
        self.logit = keras.layers.Conv2D(1, 3, padding="same", name="logit")

    def call(self, images):
        x = images * 2.0 - 1.0
        for conv, norm in zip(self.convs, self.norms):
            x = conv(x)
            if norm is not None:
                x = norm(x)
            x = tf.nn.leaky_relu(x, 0.2)
        return self.logit(x)

    def get_config(self):
        return dict(name=self.name, filters=self.filters, num_layers=self.num_layers,
                    norm_groups=self.norm_groups)
