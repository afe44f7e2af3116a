"""Services: every write to batches, their files, items and events goes through these."""

from batches.services.approval import *  # noqa: F403
from batches.services.building import *  # noqa: F403
from batches.services.dispatch import *  # noqa: F403
from batches.services.failures import *  # noqa: F403
from batches.services.notify import *  # noqa: F403
from batches.services.outcomes import *  # noqa: F403
from batches.services.polling import *  # noqa: F403
from batches.services.reconciling import *  # noqa: F403
from batches.services.scheduling import *  # noqa: F403
from batches.services.transitions import *  # noqa: F403
from batches.services.upload import *  # noqa: F403
