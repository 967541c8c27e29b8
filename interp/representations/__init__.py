"""What a hidden state encodes: linear probes with control tasks, and steering vectors."""
