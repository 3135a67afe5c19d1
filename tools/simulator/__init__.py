"""A provider simulator speaking OpenAI's and Anthropic's wire formats, with faults.

Run it with ``python -m tools.simulator --port 8090``; see ``app`` for the endpoints
and ``faults.Step`` for the script fields.
"""

from tools.simulator.app import create_app
from tools.simulator.faults import SimulatorConfig, Step

__all__ = ["SimulatorConfig", "Step", "create_app"]
