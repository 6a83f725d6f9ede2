"""agenttrail.processors"""
