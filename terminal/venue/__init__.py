"""Venues that admit by card or identity: a museum's or science centre's time-slot
reservations (:mod:`terminal.venue.reservations`) and a scenic area's passes bound to a card
(:mod:`terminal.venue.passes`), both published by the back office as signed documents."""
