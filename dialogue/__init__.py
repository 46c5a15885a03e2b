"""Everything about dialogue: domains, dialogue acts, the state tracker and system NLG.

Later parts (the NLU, the FastAPI service, persistence, the Rasa action server, analytics) live
here too. Nothing in this package imports ``simulators`` or ``metarl_core``'s training code.
"""
