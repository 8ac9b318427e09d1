"""Push notifications: ``POST /push``, ``_PushStatus``, and the adapters that talk to APNs and FCM.

See docs/push.md. The adapter boundary is :class:`parsectl.push.base.PushAdapter`; the built-in adapters
are :class:`~parsectl.push.base.ProviderAdapter` (APNs over HTTP/2 with token auth, FCM HTTP v1) and
:class:`~parsectl.push.log.LogAdapter` (development).
"""

from parsectl.push.base import DeviceResult, ProviderAdapter, PushAdapter
from parsectl.push.config import PushConfigError, PushSetup, load
from parsectl.push.controller import PushController
from parsectl.push.log import LogAdapter

__all__ = ["DeviceResult", "LogAdapter", "ProviderAdapter", "PushAdapter", "PushConfigError", "PushController",
           "PushSetup", "load"]
