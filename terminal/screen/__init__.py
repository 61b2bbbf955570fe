"""The holder-facing screen: what the holder sees and hears at the terminal (docs/screen.md).

The runtime serves a page on 127.0.0.1 that the kiosk's browser shows full-screen; it says
what to do, the outcome in words with colour and an icon, the reason for a refusal and what
to do next, and offers voice prompts, a large-print mode, assistance ("call staff") and the
complaint channel.
"""
