"""MaGNeTS decoding: static plans, sampling, and the XLA cached decoder."""
from magnets_tf.decoding.schedule import DecodePlan, make_plan, parse_model_schedule
