"""The exceptions under the module path code written for 0.8.1 imports them from.

They are defined once, in `cluster_api.errors`; this module names them for
``from cluster_api.exceptions import SubmitError``.
"""

from .errors import ClusterAPIError, CommandFailedError, CommandTimeoutError, SubmitError

__all__ = ["ClusterAPIError", "CommandFailedError", "CommandTimeoutError", "SubmitError"]
