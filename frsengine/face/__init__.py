"""Face geometry: dlib models (landmarks, detection, identity descriptor) and, built on them,
detection/alignment helpers used by the priors and by whole-image restoration."""
