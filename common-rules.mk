# Rules shared by every Makefile.am.

NULL =

CLEANFILES = *~
