"""Push: rules (defaults and users' own), evaluation of new events, unread counts and
notifications, and HTTP pushers. :class:`ruma.push.service.PushServices` builds it."""
