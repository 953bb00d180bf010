import pytest

from tests.package_fixtures import _one_thread  # noqa: F401  (autouse: one thread, seeded)
from tests.train.helpers import make_faces


@pytest.fixture(scope="session")
def faces(tmp_path_factory):
    return make_faces(tmp_path_factory.mktemp("faces") / "train", 12)
