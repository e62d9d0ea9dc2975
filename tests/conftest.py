"""Keep the tests' persistent compile cache out of the user's home folder."""

import os
import tempfile

os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="wgan-test-cache-")
