"""Small random 3D tokenizers shared by the video tests of several packages."""


def tiny_video_tokenizer(size=8, frames=4, spatial_downsample=(False, True), channels=1):
    """A built VideoTokenizer for [frames, size, size, channels] clips, 16 codes, one
    temporal downsampling: grid (frames/2, size/s, size/s) with s the spatial factor."""
    from magnets_tf.models.video_tokenizer import VideoTokenizer
    tokenizer = VideoTokenizer(video_shape=(frames, size, size, channels), filters=8,
                               channel_multipliers=(1, 1, 2), num_res_blocks=1,
                               temporal_downsample=(True, False),
                               spatial_downsample=spatial_downsample, embedding_dim=4,
                               codebook_size=16, norm_groups=4)
    tokenizer.build()
    return tokenizer
