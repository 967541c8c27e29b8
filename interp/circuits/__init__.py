"""Which components do the work: attention patterns and head detectors, the logit lens and direct
logit attribution, activation and attribution patching, path patching, and edge-attribution circuits."""
