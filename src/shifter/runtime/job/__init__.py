"""A job's container (setupRoot/unsetupRoot): building it, taking it down, entering it with
`shifter`, and its sshd.
"""
