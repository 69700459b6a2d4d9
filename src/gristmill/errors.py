"""The whole gristmill exception tree, split by whose fault it is.

::

    GristmillError
    ├── ConfigError              the user's config or arguments are invalid
    │   ├── SeedDatasetError     a seed source is missing, unreadable, empty or out of range
    │   └── ConstraintError      constraints could not be satisfied by rejection sampling
    ├── GenerationError          a column failed while generating a batch (custom code, casting)
    ├── ModelError               a model endpoint failed or answered badly
    │   ├── ModelAuthError       401/403, or an API key environment variable is not set
    │   ├── ModelUnreachableError  nothing answered at the endpoint before any success
    │   ├── ModelRateLimitError  429s that did not clear within the retry budget
    │   └── ModelResponseError   a response that could not be parsed or validated
    ├── ArtifactError            stored state is missing, corrupt or of another kind
    │   ├── ResumeError          a resume was asked for but is not possible
    │   └── LockedError          another process holds the directory lock
    └── WorkflowError            a composite workflow cannot be built or run

Every message says what is wrong, where (field, file, stage) and what to do next.
"""

from __future__ import annotations


class GristmillError(Exception):
    """Base class of every error gristmill raises on purpose."""


class ConfigError(GristmillError):
    """The user's config or arguments are invalid; nothing was written."""


class SeedDatasetError(ConfigError):
    """A seed dataset is missing, unreadable, empty, or a selection is out of range."""


class ConstraintError(ConfigError):
    """Constraints could not be satisfied within the bounded rejection-sampling rounds."""


class GenerationError(GristmillError):
    """A column failed while a batch was generated (custom code, a cast, a template)."""


class ModelError(GristmillError):
    """A model endpoint failed, refused, or answered with something unusable."""


class ModelAuthError(ModelError):
    """The endpoint refused the credentials, or the API key variable is not set."""


class ModelUnreachableError(ModelError):
    """Nothing answered at the model's endpoint before any success: the run stops at once."""


class ModelRateLimitError(ModelError):
    """The endpoint kept answering 429 beyond the retry budget."""


class ModelResponseError(ModelError):
    """A response could not be parsed or validated, even after corrections."""


class ArtifactError(GristmillError):
    """Stored state (metadata, batch files) is missing, corrupt or foreign."""


class ResumeError(ArtifactError):
    """A resume was requested but the stored run does not match the request."""


class LockedError(ArtifactError):
    """Another live process holds the lock on the directory."""


class WorkflowError(GristmillError):
    """A composite workflow cannot be built or run as requested."""


__all__ = [
    "ArtifactError",
    "ConfigError",
    "ConstraintError",
    "GenerationError",
    "GristmillError",
    "LockedError",
    "ModelAuthError",
    "ModelError",
    "ModelRateLimitError",
    "ModelResponseError",
    "ResumeError",
    "SeedDatasetError",
    "WorkflowError",
]
