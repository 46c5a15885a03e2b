"""Rasa integration: a Rasa assistant hands dialogue management to segdial through custom actions.

- ``dialogue.rasa.mapping``: Rasa's tracker (latest message, intent, entities, slots) -> a segdial
  turn, and segdial's reply -> Rasa responses and ``SlotSet`` events;
- ``dialogue.rasa.backends``: where turns go: the service layer in this process, or the HTTP API;
- ``dialogue.rasa.server``: the action server that ``segdial actions`` runs (rasa-sdk's webhook,
  with JSON 400s for malformed bodies);
- ``dialogue.rasa_actions``: the actions themselves (the module rasa-sdk loads).
"""
