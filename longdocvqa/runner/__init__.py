"""The per-document loop written once (loop), the guarded per-document worker processes (isolate), and where jobs run:
the Executor protocol (executor), the local executors (local) and Ray (ray).
"""
