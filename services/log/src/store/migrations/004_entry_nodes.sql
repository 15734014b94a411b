-- The Merkle tree's perfect-subtree hashes move into the rows of the entries that complete them.
--
-- Appending the leaf at seq s completes the node at level 0 (the leaf) and one node per trailing 1
-- bit of s: node (level L, idx i) is completed by seq (i + 1) * 2^L - 1. `nodes` holds those
-- hashes, level 0 first, 32 bytes each, so an append writes one row per entry instead of an entry
-- row and about two log.tree_nodes rows (three index insertions per entry down to one), and a
-- proof still reads O(log n) rows by primary key. Entries appended before this migration keep
-- `nodes` NULL and their nodes in log.tree_nodes, where proofs still find them; nothing is
-- rewritten (the append-only trigger covers the column like every other).
ALTER TABLE log.entries ADD COLUMN nodes bytea;
ALTER TABLE log.entries ADD CONSTRAINT entries_nodes_whole_hashes
  CHECK (nodes IS NULL OR (octet_length(nodes) BETWEEN 32 AND 64 * 32 AND octet_length(nodes) % 32 = 0)) NOT VALID;
