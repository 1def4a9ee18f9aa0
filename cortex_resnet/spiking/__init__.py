"""spiking"""
