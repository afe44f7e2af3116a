"""Services: every write to batches, their files, items and events goes through these."""

from batches.services.approval import *  # noqa: F403
from batches.services.building import *  # noqa: F403
from batches.services.delivery import *  # noqa: F403
from batches.services.reconciling import *  # noqa: F403
from batches.services.scheduling import *  # noqa: F403
from batches.services.transitions import *  # noqa: F403
