"""Where results are kept: the SQL tables and migrations, the vector store and its writer."""
