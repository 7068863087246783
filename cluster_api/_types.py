"""The data types under the module path code written for 0.8.1 imports them from.

They are defined once, in `cluster_api.models`; this module names them for
``from cluster_api._types import JobStatus``.
"""

from .models import ArrayElement, JobExitCondition, JobRecord, JobStatus, ResourceSpec

__all__ = ["ArrayElement", "JobExitCondition", "JobRecord", "JobStatus", "ResourceSpec"]
