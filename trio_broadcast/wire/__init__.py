"""What server and client share: the message models and their JSON codec."""
