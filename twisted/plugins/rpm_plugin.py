"""twistd plugin: `twistd rpm` builds the service in rpm.tap (imported lazily)."""

from twisted.application.service import ServiceMaker

rpm = ServiceMaker(
    "Remote Process Manager", "rpm.server.tap", "rpm: remote process manager server", "rpm"
)
