"""schnitzel's ROS side: lifecycle node adapters, built-in node plugins and the container process."""
