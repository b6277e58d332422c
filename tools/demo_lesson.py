"""Print the memory lesson that ends ``invsess demo`` (the quick start page shows it)."""

from invsess.demo import run_demo

if __name__ == "__main__":
    run_demo()
