"""SavedModel export for TF Serving (versioned, atomic, with warm-up requests)."""
from magnets_tf.export.saved_model import (build_archive, export_saved_model, next_version,
                                           signature_name, signature_names)
