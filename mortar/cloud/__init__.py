"""What an operator makes inside a deployed cloud (not how it is deployed): first resources."""
