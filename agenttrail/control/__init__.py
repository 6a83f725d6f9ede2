"""agenttrail.control"""
