"""Fixtures shared across areas: `meeting` (a community with members and signed-in browsers on
one running app, from the check-in tests) serves the tests of what spans areas, like retention."""

from tests.safespace.checkin.conftest import meeting  # noqa: F401 - a fixture, found by name
