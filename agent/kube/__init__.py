"""The agent's writes to Kubernetes: its Node's annotations, labels and condition, and the
node's FLUIDOS Flavor."""
